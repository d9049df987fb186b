"""Auto-labelling: a folder of images + an ontology -> a streamed, resumable, exported dataset.

``label`` runs it (see :mod:`grounded.label.runner`); ``export_run`` rebuilds exports from a finished run.

``grounded.label`` is both this package and the function: the package is callable, so
``grounded.label(images, ontology, out)`` works whichever of the two ``grounded.label`` names at the time
(Python's import system rebinds the name to the package when a submodule such as
``grounded.label.export`` is imported).
"""

import sys
import types

from grounded.label.export import FORMATS, export_run
from grounded.label.runner import label
from grounded.label.summary import LabelSummary

__all__ = ["FORMATS", "LabelSummary", "export_run", "label"]


class _CallablePackage(types.ModuleType):
    def __call__(self, *args, **kwargs) -> LabelSummary:
        return label(*args, **kwargs)

    __call__.__doc__ = label.__doc__


sys.modules[__name__].__class__ = _CallablePackage

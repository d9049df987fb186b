"""Auto-labelling: a folder of images + an ontology -> a streamed, resumable, exported dataset.

``label`` runs it (see :mod:`grounded.label.runner`); ``export_run`` rebuilds exports from a finished run.
"""

from grounded.label.export import FORMATS, export_run
from grounded.label.runner import label
from grounded.label.summary import LabelSummary

__all__ = ["FORMATS", "LabelSummary", "export_run", "label"]

"""``grounded doctor``: versions, extras, device, threads and CPU features, for bug reports (grounded/doctor.py)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    from grounded import doctor

    p = sub.add_parser("doctor", help="print versions, extras, device, threads and CPU features for a bug report",
                       description=doctor.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    doctor.add_arguments(p)
    p.set_defaults(func=doctor.run)

"""A compute budget as a training setting: fix the number of steps that fit, lay the schedule over exactly those.

``TrainConfig(budget_minutes=30)`` (``grounded train --budget 30m``) plans a run in wall time, everything
inside :func:`grounded.distill.train.train` counted (building the data cache, training, validation,
checkpoints):

1. the first ``measure_steps`` optimiser steps run under the warm-up (which depends on no total) and are
   timed (the very first step, which pays one-off costs, is not counted);
2. :meth:`BudgetPlanner.plan` fixes the total number of steps that fit in what is left, allowing for up to
   ``validations`` validation passes (no more than ``max_validation_share`` of the time; estimated from the
   step time until one is measured) and a reserve for the final save; warm-up is capped at a fifth of it,
   and the cosine decays to ``min_lr_ratio`` exactly at the last planned step;
3. after each validation the plan is corrected with the measured throughput (a machine shared with other work
   changes speed), so the run still ends on time, decayed, at its (re)planned last step; the best student by
   validation mIoU is kept along the way.

``parse_budget("90s" | "30m" | "2h" | "45")`` reads a duration (a bare number is minutes).
"""

from __future__ import annotations

import math
import re
import statistics
import time
from collections.abc import Callable

from grounded.errors import InputError

_UNITS = {"s": 1 / 60, "sec": 1 / 60, "m": 1.0, "min": 1.0, "h": 60.0, "hr": 60.0}


def parse_budget(text: str | float) -> float:
    """A duration as minutes: ``"90s"`` -> 1.5, ``"30m"`` -> 30, ``"2h"`` -> 120, ``"45"`` -> 45."""
    if isinstance(text, (int, float)):
        minutes = float(text)
    else:
        match = re.fullmatch(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([a-z]*)\s*", str(text).lower())
        if not match or match.group(2) not in ("", *_UNITS):
            raise InputError(f"budget {text!r} is not a duration; write e.g. 90s, 30m or 2h")
        minutes = float(match.group(1)) * _UNITS.get(match.group(2), 1.0)
    if minutes <= 0:
        raise InputError(f"budget {text!r} must be more than zero")
    return minutes


class BudgetPlanner:
    """Plans the total number of optimiser steps of a run that must end ``budget_s`` seconds after ``start``.

    Call :meth:`step_done` after every step and :meth:`validation_done` with each validation's duration;
    :attr:`total` is None until the first ``measure_steps`` (+ 1) steps are measured, then the planned total.
    """

    def __init__(self, budget_s: float, validations: int = 8, measure_steps: int = 4, reserve_s: float | None = None,
                 clock: Callable[[], float] = time.monotonic, validation_steps: float = 30.0,
                 max_validation_share: float = 0.12) -> None:
        self.max_validation_share = max_validation_share
        self.budget_s, self.validations, self.measure_steps = float(budget_s), int(validations), int(measure_steps)
        self.validation_steps = float(validation_steps)  # a validation's cost in steps, until one is measured
        self.reserve_s = reserve_s if reserve_s is not None else min(30.0, 0.02 * self.budget_s)
        self.clock = clock
        self.start = clock()
        self.total: int | None = None
        self._last = self.start
        self._step_times: list[float] = []
        self._val_times: list[float] = []
        self._val_start = self.start
        self._interval = 1

    def step_done(self, step: int) -> int | None:
        """Record the end of optimiser step ``step`` (1-based count of steps done); returns :attr:`total`."""
        now = self.clock()
        self._step_times.append(now - self._last)
        self._last = now
        if self.total is None and len(self._step_times) > self.measure_steps:
            self.plan(step)
        return self.total

    def validation_started(self) -> None:
        self._val_start = self.clock()

    def validation_done(self, step: int) -> int | None:
        """Record a validation that just ended after step ``step``, and correct the plan; returns :attr:`total`."""
        now = self.clock()
        self._val_times.append(now - self._val_start)
        self._last = now  # the time of the validation is not a step's
        if self.total is not None and step < self.total:
            self.plan(step)
        return self.total

    def step_seconds(self) -> float:
        """Seconds per step: the median of the measured steps, recent ones (the last 50) when there are many."""
        measured = self._step_times[1:] or self._step_times  # the first step pays one-off costs
        return statistics.median(measured[-50:])

    def validation_seconds(self) -> float:
        """Seconds per validation: measured, or (before the first) estimated as ``validation_steps`` steps' worth."""
        return statistics.mean(self._val_times) if self._val_times else self.validation_steps * self.step_seconds()

    def plan(self, step: int) -> int:
        """Fix :attr:`total` from what is left of the budget, ``step`` steps being done, and the steps between
        the validations still to come (at most ``validations``, and at most ``max_validation_share`` of the
        time left; the last one is at the last step)."""
        left = self.budget_s - (self.clock() - self.start) - self.reserve_s
        per_step, per_validation = self.step_seconds(), self.validation_seconds()
        validations = max(1, min(self.validations, math.floor(self.max_validation_share * left / per_validation)))
        steps = max(1, math.floor((left - validations * per_validation) / per_step))
        self.total = step + steps
        self._interval = max(1, math.ceil(steps / validations))
        return self.total

    def val_interval(self) -> int:
        """Steps from now to the next validation (the last one falls on the last step)."""
        return self._interval

"""The compute budget: durations parse, the planner fixes the steps that fit, and a budgeted run ends with the
learning rate decayed exactly at its planned last step."""

from __future__ import annotations

import pytest

from grounded.distill.budget import BudgetPlanner, parse_budget
from grounded.distill.config import StudentConfig, TrainConfig
from grounded.distill.train import train
from grounded.errors import InputError
from grounded.utils.schedule import warmup_cosine


@pytest.mark.parametrize("text, minutes", [("90s", 1.5), ("30m", 30.0), ("2h", 120.0), ("45", 45.0), ("1.5h", 90.0),
                                           (" 10 min ", 10.0), (12, 12.0), ("soon", None), ("-5m", None),
                                           ("0", None), ("10 days", None), ("", None)])
def test_durations_parse_and_bad_ones_are_input_errors(text, minutes):
    if minutes is None:
        with pytest.raises(InputError):
            parse_budget(text)
    else:
        assert parse_budget(text) == pytest.approx(minutes)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_planner_fixes_the_steps_that_fit_and_corrects_after_validations():
    clock = Clock()
    planner = BudgetPlanner(budget_s=1000, validations=4, measure_steps=4, reserve_s=0, clock=clock,
                            max_validation_share=0.5)
    clock.now = 10.0  # setup (cache, model) counts against the budget
    total = None
    for step in range(1, 6):
        clock.now += 2.0  # 2 s per step
        total = planner.step_done(step)
    # 980 s left at step 5: n steps of 2 s + 4 validations estimated at 30 steps (60 s) each
    assert total == 5 + (980 - 4 * 60) // 2 == 375 and planner.val_interval() == -(-370 // 4)
    planner.validation_started()
    clock.now += 5.0  # a validation is cheaper than estimated: the plan grows
    assert planner.validation_done(5) == 5 + (975 - 4 * 5) // 2
    clock.now += 2 * 400  # the machine got slower: 400 steps took the time of ... 400 steps, and little is left
    for step in range(6, 10):
        planner.step_done(step)
    planner.validation_started()
    clock.now += 5.0
    assert planner.validation_done(9) < 5 + (975 - 4 * 5) // 2  # the plan shrinks to end on time


def test_schedule_over_the_planned_steps_ends_decayed_exactly_there():
    total, warmup, floor = 137, 20, 0.01
    factors = [warmup_cosine(s, warmup, total, floor) for s in range(total + 1)]
    assert factors[warmup - 1] == 1.0 and factors[total] == pytest.approx(floor)
    assert factors[total - 1] > floor and all(a >= b for a, b in zip(factors[warmup:], factors[warmup + 1:], strict=False))


def test_a_budgeted_run_ends_decayed_at_its_planned_step(coco_dataset, tmp_path):
    cfg = TrainConfig(image_size=32, batch_size=4, lr=1e-2, warmup_steps=2, budget_minutes=0.4, seed=0)
    result = train(coco_dataset, tmp_path, StudentConfig(size="tiny"), cfg, progress=False)
    assert result.steps == result.planned_steps > 5 and not result.stopped_early
    assert result.final_lr == pytest.approx(cfg.lr * cfg.min_lr_ratio)  # the last step runs at the bottom
    assert result.seconds < 0.4 * 60 + 15 and (tmp_path / "student.safetensors").is_file()
    assert result.history[-1]["step"] == result.steps  # validated (and the best kept) at the end

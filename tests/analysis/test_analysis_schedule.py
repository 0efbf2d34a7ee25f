"""Schedule recognition on LR series produced by real torch schedulers (and a real plateau run)."""

from __future__ import annotations

import warnings
from functools import cache

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from lrwatch.analysis import analyze
from lrwatch.analysis.schedule import KINDS, recognize_schedule
from lrwatch.tasks import SCHEDULES, TrainConfig, make_scheduler, train
from tests.analysis.conftest import lrs_used

sched = torch.optim.lr_scheduler


def lr_series(make, steps: int, lr: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """Steps and the LR each optimizer step used, under the scheduler ``make(optimizer)``."""
    return np.arange(steps), lrs_used(make, steps=steps, lr=lr)


@cache
def task_lr_series(name: str, steps: int) -> tuple[np.ndarray, np.ndarray]:
    config = TrainConfig(lr=0.1, steps=steps, schedule=name)
    return lr_series(lambda opt: make_scheduler(opt, config), steps)


# TrainConfig.schedule name -> (expected kind, whether a warmup precedes it)
EXPECTED = {
    "constant": ("constant", False),
    "step": ("step", False),
    "exponential": ("exponential", False),
    "cosine": ("cosine", False),
    "linear_decay": ("linear", False),
    "warmup_constant": ("constant", True),
    "warmup_cosine": ("cosine", True),
    "cyclic": ("cyclical", False),
    "onecycle": ("one_cycle", False),
}


def test_every_task_schedule_is_covered():
    assert set(EXPECTED) | {"plateau"} == set(SCHEDULES)


@pytest.mark.parametrize("every", [1, 10, 37])
@pytest.mark.parametrize("steps", [400, 3000])
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_task_schedulers_recognised_at_any_logging_interval(name, steps, every):
    s, v = task_lr_series(name, steps)
    schedule = recognize_schedule(s[::every], v[::every])
    kind, has_warmup = EXPECTED[name]
    assert schedule.kind == kind, schedule
    assert bool(schedule.warmup_steps) == has_warmup
    if has_warmup:  # the tasks warm up for 10% of the run
        assert abs(schedule.warmup_steps - steps // 10) <= every + 1
    assert schedule.peak_lr == pytest.approx(v[::every].max())


def test_step_decay_reports_gamma_and_step_size():
    s, v = lr_series(lambda opt: sched.StepLR(opt, step_size=250, gamma=0.5), 1000)
    schedule = recognize_schedule(s, v)
    assert schedule.kind == "step"
    assert schedule.details["gamma"] == pytest.approx(0.5)
    assert schedule.details["step_size"] == 250


def test_exponential_reports_its_gamma():
    s, v = lr_series(lambda opt: sched.ExponentialLR(opt, gamma=0.995), 600)
    schedule = recognize_schedule(s, v)
    assert schedule.kind == "exponential"
    assert schedule.details["gamma_per_step"] == pytest.approx(0.995, rel=1e-6)


def test_cosine_stopped_before_t_max_is_still_cosine():
    s, v = lr_series(lambda opt: sched.CosineAnnealingLR(opt, T_max=1000, eta_min=1e-4), 700)
    assert recognize_schedule(s, v).kind == "cosine"


def test_warm_restarts_are_cyclical():
    s, v = lr_series(lambda opt: sched.CosineAnnealingWarmRestarts(opt, T_0=200), 1000)
    schedule = recognize_schedule(s, v)
    assert schedule.kind == "cyclical"
    assert schedule.details["period_steps"] == 200


def test_a_cyclic_lr_stopped_mid_cycle_is_cyclical():
    # Up, down, up: one and a half triangles (it was "unknown").
    s, v = lr_series(lambda opt: sched.CyclicLR(opt, 0.01, 0.1, step_size_up=50), 150)
    assert recognize_schedule(s, v).kind == "cyclical"


@pytest.mark.parametrize(("factor", "held", "gamma"), [(0.1, 2, 0.9), (0.5, 10, 0.99)])
def test_a_warmup_held_low_by_constant_lr_while_the_decay_runs_is_a_warmup(factor, held, gamma):
    # torch's own ChainedScheduler example: the LR decays from step 0 but is held at a fraction
    # of it until total_iters, then jumps up once. One rise to a level never seen before is a
    # warmup, not a cycle (a warm restart returns to the rate the run started at).
    def make(opt):
        constant = sched.ConstantLR(opt, factor=factor, total_iters=held)
        return sched.ChainedScheduler([constant, sched.ExponentialLR(opt, gamma=gamma)])

    s, v = lr_series(make, 200)
    schedule = recognize_schedule(s, v)
    assert (schedule.kind, schedule.warmup_steps) == ("exponential", held + 1), schedule
    assert schedule.details["gamma_per_step"] == pytest.approx(gamma)


def test_linear_warmup_then_step_decay_via_sequential_lr():
    def make(opt):
        warm = sched.LinearLR(opt, start_factor=0.01, total_iters=100)
        decay = sched.StepLR(opt, step_size=300, gamma=0.1)
        return sched.SequentialLR(opt, [warm, decay], milestones=[100])

    s, v = lr_series(make, 1000)
    schedule = recognize_schedule(s, v)
    assert schedule.kind == "step"
    assert abs(schedule.warmup_steps - 101) <= 2
    assert schedule.describe().startswith("warmup (")


def test_run_that_stops_during_warmup_is_warmup_only():
    s, v = lr_series(lambda opt: sched.LinearLR(opt, start_factor=0.1, total_iters=500), 300)
    assert recognize_schedule(s, v).kind == "warmup_only"


def test_float32_logging_does_not_break_recognition():
    s, v = lr_series(lambda opt: sched.CosineAnnealingLR(opt, T_max=2000), 2000)
    assert recognize_schedule(s, v.astype(np.float32).astype(np.float64)).kind == "cosine"


def test_lr_scale_does_not_matter():
    s, v = lr_series(lambda opt: sched.StepLR(opt, step_size=100, gamma=0.3), 500)
    kinds = {recognize_schedule(s, v * scale).kind for scale in (1e-6, 1.0, 1e3)}
    assert kinds == {"step"}


def test_missing_and_degenerate_series():
    assert recognize_schedule(None, None).kind == "missing"
    assert recognize_schedule(np.array([], np.int64), np.array([])).kind == "missing"
    assert recognize_schedule(np.array([5]), np.array([0.1])).kind == "constant"
    assert recognize_schedule(np.array([0, 1]), np.array([np.nan, np.inf])).kind == "missing"
    assert all(
        recognize_schedule(np.arange(50), np.full(50, lr)).kind == "constant" for lr in (0, 1e-9)
    )


def test_reduce_lr_on_plateau_from_a_real_training_run():
    # ReduceLROnPlateau in lrwatch.tasks: drops by 0.1 whenever the windowed loss stalls, so the
    # drops come at intervals set by the loss, not by a clock.
    run = train(TrainConfig(task="mlp_regression", lr=0.01, steps=1000, schedule="plateau"))
    schedule = recognize_schedule(run.lr.steps, run.lr.values)
    assert len(schedule.details["drop_steps"]) >= 3
    assert schedule.kind == "plateau_reductions", schedule
    assert schedule.details["gamma"] == pytest.approx(0.1)
    # analyze() reports the same schedule.
    assert analyze(run).schedule.kind == "plateau_reductions"


def test_uneven_multistep_milestones_are_described_as_either_schedule():
    # MultiStepLR([30, 60, 80]) drops by one factor at uneven steps, as ReduceLROnPlateau does:
    # the description named only the latter ("plateau reductions") for a preset schedule.
    lr = lrs_used(lambda o: torch.optim.lr_scheduler.MultiStepLR(o, [30, 60, 80]), steps=90, lr=0.1)
    schedule = recognize_schedule(np.arange(90), lr)
    assert schedule.kind == "plateau_reductions"
    assert schedule.details["drop_steps"] == [30, 60, 80]
    assert schedule.describe() == "plateau-reduction or multi-step"


def test_kinds_are_declared():
    assert {"missing", "one_cycle", "plateau_reductions", "unknown"} <= set(KINDS)


@given(
    st.lists(
        st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from([0.0, -1.0, 1e-12]),
        max_size=60,
    )
)
def test_recognition_never_crashes_and_names_a_known_kind(values):
    schedule = recognize_schedule(np.arange(len(values)), np.array(values, np.float64))
    assert schedule.kind in KINDS


def test_lrs_at_the_float_limits_raise_no_numpy_warnings():
    # Found by the Hypothesis test of analyze(): a decay this steep underflows in the fits
    # (log of 0). The answer is simply "no clean schedule", and nothing may be printed on the
    # user's terminal.
    values = np.array([1e308, 1.0, 6.68797027e-171])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        schedule = recognize_schedule(np.arange(values.size), values)
    assert schedule.kind == "unknown"


def test_polynomial_decay_reports_its_power():
    # PolynomialLR(power=2) was "unknown": no linear, exponential or cosine fit came within 3%.
    s, v = lr_series(lambda opt: sched.PolynomialLR(opt, total_iters=1000, power=2.0), 1000)
    schedule = recognize_schedule(s, v)
    assert (schedule.kind, schedule.details["power"]) == ("polynomial", 2.0)
    # Power 1 is a straight line, named linear as before.
    s, v = lr_series(lambda opt: sched.PolynomialLR(opt, total_iters=1000, power=1.0), 1000)
    assert recognize_schedule(s, v).kind == "linear"


@pytest.mark.parametrize("every", [1, 10])
def test_the_transformer_schedule_is_warmup_then_inverse_sqrt(every):
    # Attention Is All You Need: linear warmup over 400 steps, then 1/sqrt(step). Was "unknown".
    noam = lambda opt: sched.LambdaLR(opt, lambda k: min((k + 1) / 400, (400 / (k + 1)) ** 0.5))  # noqa: E731
    s, v = lr_series(noam, 4000)
    schedule = recognize_schedule(s[::every], v[::every])
    assert schedule.kind == "inverse_sqrt"
    assert abs(schedule.warmup_steps - 400) <= every
    assert schedule.describe().startswith("warmup (")


def test_the_fewest_points_named_a_shaped_family():
    s, v = lr_series(lambda opt: sched.PolynomialLR(opt, total_iters=100, power=2.0), 100)
    assert recognize_schedule(s[::20], v[::20]).kind != "polynomial"  # 5 points
    assert recognize_schedule(s[::16], v[::16]).kind == "polynomial"  # 7 points


def _wsd(steps: int, warmup: int, decay: int, cooldown):
    """Hugging Face's get_wsd_schedule as a LambdaLR: linear warmup, a hold at the peak, then
    ``cooldown(progress)`` over the last ``decay`` steps."""

    def factor(k: int) -> float:
        if k < warmup:
            return (k + 1) / warmup
        if k < steps - decay:
            return 1.0
        return cooldown((k - (steps - decay)) / decay)

    return lambda opt: sched.LambdaLR(opt, factor)


@pytest.mark.parametrize(
    ("cooldown", "shape"),
    [
        (lambda p: 1 - p, "linear"),
        (lambda p: 0.5 * (1 + np.cos(np.pi * p)), "cosine"),
        (lambda p: 1 - np.sqrt(p), "1-sqrt"),
    ],
)
@pytest.mark.parametrize("every", [1, 10])
def test_warmup_stable_decay_is_named_with_its_decay(cooldown, shape, every):
    # LLM pretraining's schedule: held at the peak, annealed over the last 20%. Was "unknown".
    s, v = lr_series(_wsd(2000, 100, 400, cooldown), 2000)
    schedule = recognize_schedule(s[::every], v[::every])
    assert (schedule.kind, schedule.details["decay_shape"]) == ("wsd", shape)
    assert abs(schedule.warmup_steps - 100) <= every
    assert abs(schedule.details["decay_start_step"] - 1600) <= every
    assert schedule.describe().endswith(f"a {shape} decay from step 1600 (warmup-stable-decay)")


def test_a_hold_then_decay_from_torch_schedulers_without_warmup():
    # ConstantLR(factor=1) holds the rate, then ExponentialLR anneals it: no warmup before.
    hold_then_exp = lambda opt: sched.SequentialLR(  # noqa: E731
        opt,
        [sched.ConstantLR(opt, factor=1.0, total_iters=600), sched.ExponentialLR(opt, 0.99)],
        milestones=[600],
    )
    schedule = recognize_schedule(*lr_series(hold_then_exp, 1000))
    assert (schedule.kind, schedule.warmup_steps) == ("wsd", None)
    assert schedule.details["decay_shape"] == "exponential"
    # A decay that leaves its peak at once is still named by its own shape.
    assert recognize_schedule(*lr_series(lambda o: sched.ExponentialLR(o, 0.99), 1000)).kind == (
        "exponential"
    )

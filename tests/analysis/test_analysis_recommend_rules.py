"""The recommendation rules, one by one: a finding placed on a run's history -> the action.

The LR histories come from real torch schedulers; the findings are placed by hand so each rule
is tested on its own, independent of the detectors' thresholds (real end-to-end runs are in
test_analysis_recommend_runs.py).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lrwatch import keys
from lrwatch.analysis.findings import Finding
from lrwatch.analysis.prepare import prepare_arrays
from lrwatch.analysis.recommend import primary_finding, recommend
from lrwatch.analysis.schedule import recognize_schedule
from tests.analysis.conftest import lrs_used

N = 400


def scheduled_lr(make, lr: float = 1.0, steps: int = N) -> np.ndarray:
    return lrs_used(make, steps=steps, lr=lr)


def decaying_loss(steps: int = N, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(steps)
    return 0.2 + 2.0 * np.exp(-t / 60) + 0.01 * rng.standard_normal(steps)


def blow_up(loss: np.ndarray, start: int) -> np.ndarray:
    out = loss.copy()
    out[start:] = out[start] * np.exp(0.2 * np.arange(N - start))
    out[start + 60 :] = np.nan
    return out


def finding(kind, start, end=None, severity="critical") -> Finding:
    return Finding(kind, start, end if end is not None else start + 20, severity, "seen")


def advise(loss, lr, findings, params=None):
    steps = np.arange(loss.size)
    prepared = prepare_arrays(steps, loss, None if lr is None else steps, lr)
    schedule = recognize_schedule(prepared.lr_steps, prepared.lr_values)
    return recommend(prepared, findings, schedule, params=params or {})


def warmup_then_constant(opt):
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 40))


def test_divergence_right_after_the_warmup_peak_lowers_the_peak():
    lr = scheduled_lr(warmup_then_constant, lr=2.0)
    rec = advise(blow_up(decaying_loss(), 60), lr, [finding("divergence", 60)])
    assert rec.action == "lower_peak_lr"
    assert rec.suggested_lr < 2.0
    assert "warmup" in rec.message and "60" in rec.message
    assert rec.evidence["suggested_warmup_steps"] > rec.evidence["warmup_steps"]


def test_divergence_during_warmup_caps_the_peak_below_the_lr_at_onset():
    lr = scheduled_lr(warmup_then_constant, lr=2.0)
    rec = advise(blow_up(decaying_loss(), 20), lr, [finding("divergence", 20)])
    assert rec.action == "lower_peak_lr"
    assert rec.suggested_lr < lr[19]


def test_divergence_from_the_first_step_without_warmup_cuts_tenfold():
    loss = 1.0 * np.exp(0.1 * np.arange(N))
    loss[150:] = np.inf
    rec = advise(loss, np.full(N, 0.5), [finding("divergence", 1)])
    assert rec.action == "decrease_lr"
    assert rec.suggested_lr == pytest.approx(0.05)
    assert rec.factor == pytest.approx(0.1)


@pytest.mark.parametrize("onset, crash", [(3, 13), (2, 18)])
def test_a_run_that_crashed_within_a_few_steps_never_trained(onset, crash):
    # A log that ends at the blow-up spans only its few steps, so a divergence at step 3 of 14
    # was not "early" (10% of the span), and the run was told it "trained until step 3" and sat
    # "just above the stable edge" (x0.3), though it had no time to improve at all.
    loss = np.full(crash + 1, 2.3)
    loss[onset:] = 2.3 * np.exp(0.8 * np.arange(crash + 1 - onset))
    loss[-1] = np.inf
    rec = advise(loss, np.full(crash + 1, 3.0), [finding("divergence", onset, crash)])
    assert rec.action == "decrease_lr"
    assert rec.factor == pytest.approx(0.1) and rec.suggested_lr == pytest.approx(0.3)
    assert "never improved" in rec.message


def test_early_divergence_after_progress_without_warmup_adds_warmup():
    rec = advise(blow_up(decaying_loss(), 30), np.full(N, 0.5), [finding("divergence", 30)])
    assert rec.action == "add_warmup"
    assert rec.suggested_lr < 0.5
    assert rec.evidence["suggested_warmup_steps"] >= 30


def test_mid_run_divergence_scales_the_lr_in_force_before_it():
    # Step decay 1.0 -> 0.1 at step 133 -> 0.01 at 266; the blow-up starts at step 300.
    lr = scheduled_lr(lambda o: torch.optim.lr_scheduler.StepLR(o, 133, 0.1))
    rec = advise(blow_up(decaying_loss(), 300), lr, [finding("divergence", 300)])
    assert rec.action == "decrease_lr"
    assert rec.suggested_lr == pytest.approx(0.3 * 0.01)
    assert "300" in rec.message


def test_an_isolated_nan_the_loss_recovers_from_means_clip_gradients():
    loss = decaying_loss()
    loss[250] = np.nan
    assert advise(loss, np.full(N, 0.1), []).action == "clip_gradients"
    spike = decaying_loss()
    spike[250:253] = 1e6
    rec = advise(spike, np.full(N, 0.1), [finding("divergence", 250, 252)])
    assert rec.action == "clip_gradients"
    # A detector's span for a non-finite loss runs to the end of the run; the spike is the NaN.
    rec = advise(loss, np.full(N, 0.1), [finding("divergence", 250, N - 1)])
    assert rec.action == "clip_gradients" and "at step 250" in rec.message
    # Many non-finite values are no isolated spike.
    many = decaying_loss()
    many[250:260] = np.nan
    assert advise(many, np.full(N, 0.1), [finding("divergence", 250, N - 1)]).action != (
        "clip_gradients"
    )


def test_oscillation_with_heavy_momentum_reduces_momentum():
    loss = decaying_loss()
    params = {"optimizer": "sgd", "momentum": "0.95"}
    rec = advise(loss, np.full(N, 0.1), [finding("oscillation", 100, 300, "warning")], params)
    assert rec.action == "reduce_momentum"
    assert rec.evidence["suggested_momentum"] == pytest.approx(0.9)
    assert rec.evidence["alternative_lr"] == pytest.approx(0.05)


@pytest.mark.parametrize("params", [{}, {"optimizer": "adam", "momentum": "0.95"}])
def test_oscillation_otherwise_halves_the_lr(params):
    rec = advise(decaying_loss(), np.full(N, 0.1), [finding("oscillation", 100, 300)], params)
    assert rec.action == "decrease_lr"
    assert rec.suggested_lr == pytest.approx(0.05)


def test_plateau_under_a_constant_lr_decays_it():
    rec = advise(decaying_loss(), np.full(N, 0.1), [finding("plateau", 250, 399, "warning")])
    assert rec.action == "decay_lr"
    assert rec.suggested_lr == pytest.approx(0.01)
    assert "250" in rec.message


def test_a_converged_plateau_under_a_constant_lr_keeps_it():
    """An ``info`` plateau is the detector's "converged": keep, with the decay as an option."""
    rec = advise(decaying_loss(), np.full(N, 0.1), [finding("plateau", 250, 399, "info")])
    assert rec.action == "keep"
    assert rec.suggested_lr == pytest.approx(0.1)
    assert rec.evidence["optional_decay_lr"] == pytest.approx(0.01)
    assert "250" in rec.message


def test_keep_on_a_short_constant_rate_log_says_a_plateau_was_not_judged():
    # A 50-epoch log at a constant rate gets no plateau finding at all (64 points are needed):
    # "No problem found. Keep it." read as "and no plateau either".
    unjudged = "A plateau is judged on 64 logged points or more"
    for lr in (np.full(50, 0.1), None):
        assert unjudged in advise(decaying_loss(50), lr, []).message
    # Judged when long enough; never a plateau under a decaying schedule.
    assert unjudged not in advise(decaying_loss(64), np.full(64, 0.1), []).message
    cosine = scheduled_lr(lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, 50), steps=50)
    assert unjudged not in advise(decaying_loss(50), cosine, []).message


def test_plateau_at_the_end_of_annealing_is_convergence():
    lr = scheduled_lr(lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, N))
    rec = advise(decaying_loss(), lr, [finding("plateau", 330, 399, "info")])
    assert rec.action == "keep"


def test_slow_convergence_raises_the_lr():
    rec = advise(
        decaying_loss(), np.full(N, 0.001), [finding("slow_convergence", 0, 399, "warning")]
    )
    assert rec.action == "increase_lr"
    assert rec.suggested_lr == pytest.approx(0.003)


def test_a_loss_that_never_moved_raises_the_lr_a_decade():
    flat = 2.0 + 0.01 * np.random.default_rng(3).standard_normal(N)
    no_progress = Finding("slow_convergence", 0, N - 1, "warning", "seen", {"no_progress": True})
    rec = advise(flat, np.full(N, 1e-4), [no_progress])
    assert rec.action == "increase_lr"
    assert rec.suggested_lr == pytest.approx(1e-3)
    assert "did not measurably improve" in rec.message
    assert "needs more steps" not in rec.message  # a loss that never moved is no short budget


def test_precedence_critical_first_then_earliest():
    plateau = finding("plateau", 10, 100, "warning")
    late = finding("divergence", 300, 320, "critical")
    early = finding("oscillation", 200, 250, "critical")
    assert primary_finding([plateau, late, early]) is early
    assert primary_finding([plateau, late]) is late
    assert primary_finding([]) is None
    # A tie goes to instability: steady the step before making it larger.
    slow = finding("slow_convergence", 0, 399, "warning")
    bounce = finding("oscillation", 0, 300, "warning")
    assert primary_finding([slow, bounce]) is bounce


def test_without_an_lr_series_no_lr_is_invented_but_params_are_used():
    findings = [finding("oscillation", 100, 300)]
    rec = advise(decaying_loss(), None, findings)
    assert rec.action == "decrease_lr" and rec.suggested_lr is None
    assert "at an unlogged LR" in rec.message and rec.factor == pytest.approx(0.5)
    assert "0.5x the LR you used" in rec.message
    for key in (keys.PARAM_BASE_LR, "lr", "learning_rate"):
        rec = advise(decaying_loss(), None, findings, {key: "0.2"})
        assert rec.suggested_lr == pytest.approx(0.1)


def test_healthy_run_keeps_and_short_run_is_not_judged():
    rec = advise(decaying_loss(), np.full(N, 0.1), [])
    assert rec.action == "keep" and rec.suggested_lr == pytest.approx(0.1)
    short = decaying_loss()[:12]
    steps = np.arange(12)
    prepared = prepare_arrays(steps, short, steps, np.full(12, 0.1))
    rec = recommend(prepared, [], recognize_schedule(steps, np.full(12, 0.1)), min_points=30)
    assert rec.action == "none" and "too short to judge" in rec.message.lower()


def test_keep_says_where_the_loss_started_not_where_its_first_5_percent_sat():
    # 20,000 steps falling fast from 2.2: the first 5% (1,000 steps) have a median of ~0.2.
    rec = advise(decaying_loss(20_000), np.full(20_000, 0.1), [])
    assert rec.action == "keep" and "the loss went from 2.1" in rec.message, rec.message
    assert rec.evidence["initial_loss"] == pytest.approx(2.15, abs=0.05)


def test_keep_at_a_constant_rate_says_when_the_loss_was_still_falling_at_the_end():
    still_falling = decaying_loss() - 0.002 * np.arange(N)  # 0.16 lower over the last fifth
    rec = advise(still_falling, np.full(N, 0.1), [])
    assert rec.action == "keep" and "still falling when the run ended (0.16" in rec.message
    assert rec.evidence["last_fifth_drop"] == pytest.approx(0.16, abs=0.01)
    converged = advise(decaying_loss(), np.full(N, 0.1), [])
    assert "still falling" not in converged.message and "last_fifth_drop" not in converged.evidence
    # Under a decaying schedule a loss falls to the end as the LR anneals: nothing to add.
    assert "still falling" not in advise(still_falling, scheduled_lr(cosine_to_zero), []).message


def test_keep_names_the_schedule_in_plain_english():
    """'under a exponential schedule' and 'under a unknown schedule' read as typos."""
    exponential = scheduled_lr(lambda opt: torch.optim.lr_scheduler.ExponentialLR(opt, 0.995))
    rec = advise(decaying_loss(), exponential, [])
    assert rec.action == "keep" and "under an exponential schedule (LR 1)" in rec.message
    cosine = scheduled_lr(cosine_to_zero)
    assert "under a cosine schedule" in advise(decaying_loss(), cosine, []).message
    # Three LR values, logged once per epoch: too few to name a shape.
    lr_steps, lr = np.array([0, 100, 200]), np.array([0.1, 0.05, 0.0333])
    prepared = prepare_arrays(np.arange(N), decaying_loss(), lr_steps, lr)
    schedule = recognize_schedule(prepared.lr_steps, prepared.lr_values)
    rec = recommend(prepared, [], schedule)
    assert schedule.kind == "unknown" and rec.action == "keep"
    assert "under an LR schedule of no kind lrwatch knows (LR 0.1)" in rec.message, rec.message


def cosine_to_zero(opt):
    return torch.optim.lr_scheduler.CosineAnnealingLR(opt, N)


@pytest.mark.parametrize(
    "findings",
    [
        [],
        [finding("divergence", 300)],
        [finding("divergence", 5)],
        [finding("oscillation", 100, 300, "warning")],
        [finding("plateau", 100, 399, "warning")],
        [finding("plateau", 100, 399, "info")],
        [finding("slow_convergence", 0, 399, "warning")],
    ],
    ids=lambda fs: fs[0].kind + fs[0].severity if fs else "none",
)
def test_a_run_without_any_lr_is_told_so_in_words_never_as_a_question_mark(findings):
    rec = advise(decaying_loss(), None, findings)
    assert rec.suggested_lr is None
    assert "?" not in rec.message and "missing" not in rec.message, rec.message
    assert ("unlogged LR" if findings else "with no LR logged") in rec.message, rec.message


def test_a_linear_decay_run_past_its_end_goes_negative_and_is_a_bug_to_fix():
    # LambdaLR(1 - s/300) trained for 400 steps: the rate crosses zero at step 300 and the
    # optimizer climbs the loss. Scaling that LR (x0.3 for the divergence) would keep the bug.
    lr = scheduled_lr(lambda opt: torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1 - s / 300))
    assert lr[301] < 0
    loss = decaying_loss()
    loss[300:] += np.linspace(0, 3, N - 300)
    rec = advise(loss, lr, [finding("divergence", 310)])
    assert rec.action == "fix_lr" and rec.suggested_lr == pytest.approx(1.0)
    assert rec.evidence["first_negative_step"] == 301
    assert "went negative at step 301" in rec.message and "decays past zero" in rec.message
    # A sign error: negative from the start; the rate meant is its absolute value.
    rec = advise(decaying_loss(), np.full(N, -0.1), [])
    assert (rec.action, rec.suggested_lr) == ("fix_lr", pytest.approx(0.1))


def test_an_lr_at_zero_for_most_of_the_run_is_a_bug_but_a_schedule_touching_zero_is_not():
    frozen = advise(decaying_loss(), np.zeros(N), [finding("slow_convergence", 0, 399, "warning")])
    assert frozen.action == "fix_lr" and frozen.suggested_lr is None
    assert "LR was 0 at 100%" in frozen.message
    params = {keys.PARAM_BASE_LR: "0.05"}
    frozen = advise(decaying_loss(), np.zeros(N), [], params)
    assert (frozen.action, frozen.suggested_lr) == ("fix_lr", pytest.approx(0.05))
    # Cosine annealing to 0 at its last step, a warmup starting from 0: ordinary schedules.
    cosine = scheduled_lr(lambda opt: torch.optim.lr_scheduler.CosineAnnealingLR(opt, N - 1))
    assert cosine[-1] == pytest.approx(0, abs=1e-12)
    assert advise(decaying_loss(), cosine, []).action == "keep"
    warmup = np.minimum(np.arange(N) / 40, 1.0)
    assert warmup[0] == 0 and advise(decaying_loss(), warmup, []).action == "keep"

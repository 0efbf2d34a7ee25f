"""Divergence: fires at or before the first NaN, on real blow-ups and analytic GD; spikes are not it."""

from __future__ import annotations

import numpy as np
import pytest

from lrwatch.analysis.detectors import detect_divergence, run_detectors
from lrwatch.analysis.prepare import prepare, prepare_arrays
from tests.analysis.conftest import per_epoch_log


def kinds(prepared):
    return {f.kind for f in run_detectors(prepared)}


def gd_on_quadratic(step_size_times_lambda: float, steps: int = 400) -> np.ndarray:
    """Loss of plain GD on f(x) = 0.5 * lam * x^2: x <- (1 - eta * lam) x, exactly."""
    lam = 3.0
    x = 2.0 * (1.0 - step_size_times_lambda) ** np.arange(steps, dtype=np.float64)
    with np.errstate(over="ignore"):
        return 0.5 * lam * x * x


@pytest.mark.parametrize("eta_lambda", [2.05, 2.5, 3.0])
def test_gd_above_two_over_lambda_diverges(eta_lambda):
    loss = gd_on_quadratic(eta_lambda)
    found = detect_divergence(prepare_arrays(np.arange(loss.size), loss))
    assert [f.kind for f in found] == ["divergence"]


@pytest.mark.parametrize("eta_lambda", [0.1, 1.0, 1.5, 1.95])
def test_gd_below_two_over_lambda_does_not_diverge(eta_lambda):
    loss = gd_on_quadratic(eta_lambda)
    assert "divergence" not in kinds(prepare_arrays(np.arange(loss.size), loss))


@pytest.mark.parametrize(
    ("task", "lr"), [("mlp_regression", 1.0), ("quadratic", 3.0), ("autoencoder", 3.0)]
)
def test_real_blow_up_is_reported_at_or_before_the_first_nan(detectors_train, task, lr):
    prepared = prepare(detectors_train(task=task, lr=lr))
    assert prepared.first_nonfinite is not None
    (finding,) = [f for f in run_detectors(prepared) if f.kind == "divergence"]
    assert finding.severity == "critical"
    assert finding.start_step <= prepared.steps[prepared.first_nonfinite]
    assert finding.evidence["first_nonfinite_step"] == prepared.steps[prepared.first_nonfinite]


def test_climb_then_nan_starts_where_the_climb_began():
    rng = np.random.default_rng(0)
    healthy = 2.0 + np.exp(-np.arange(600) / 80) + 0.05 * rng.standard_normal(600)
    climb = healthy[-1] * 1.03 ** np.arange(1, 201)  # climbs from index 600
    loss = np.concatenate([healthy, climb, [np.nan] * 5])
    (finding,) = detect_divergence(prepare_arrays(np.arange(loss.size), loss))
    assert 560 <= finding.start_step <= 680  # near the onset, well before the NaN at 800
    assert finding.evidence["climbed_first"] is True


def test_real_finite_climb_without_nan_is_divergence(detectors_train):
    run = detectors_train(task="quadratic", lr=0.3, momentum=0.98)
    prepared = prepare(run)
    found = [f for f in run_detectors(prepared) if f.kind == "divergence"]
    assert len(found) == 1 and found[0].start_step < prepared.steps[-1] // 2


def test_a_climb_that_ends_inside_the_early_bounce_is_dated_where_it_left_the_best(
    detectors_train,
):
    # Adam at 100x its best rate on the classifier, seed 9: its loss bounces between 0.95 and
    # 1.5 for 360 steps, then jumps to 1.63 around step 365 and stays there. The bounce before
    # its best made a noise band wide enough to hold that end level, and the climb was dated to
    # the run's last block (step 995): "trained until step 995, then diverged".
    run = detectors_train(task="mlp_classification", optimizer="adam", lr=0.3, seed=9, task_seed=9)
    (found,) = [f for f in run_detectors(prepare(run)) if f.kind == "divergence"]
    assert 330 <= found.start_step <= 400


@pytest.mark.parametrize("task", ["mlp_regression", "quadratic"])
def test_one_recovered_spike_is_not_divergence(detectors_train, task):
    run = detectors_train(task=task, lr={"mlp_regression": 0.03, "quadratic": 0.3}[task])
    loss = run.loss.values.copy()
    loss[500] *= 1000.0  # a single huge spike, recovered at the next step
    assert "divergence" not in kinds(prepare_arrays(run.loss.steps, loss))


def test_healthy_real_runs_do_not_diverge(detectors_train):
    for task, lr in [("mlp_regression", 0.03), ("mlp_classification", 0.3), ("quadratic", 0.3)]:
        assert "divergence" not in kinds(prepare(detectors_train(task=task, lr=lr)))


def test_a_noisy_climb_that_ends_above_the_start_is_divergence():
    # Bouncing upwards (heavy-ball momentum climbing): the per-step noise is large, but the
    # loss gave back everything it learned and more.
    t = np.arange(1000)
    rng = np.random.default_rng(9)
    level = np.where(t < 200, 2.0 - 0.5 * t / 200, 1.5 + 1.5 * (t - 200) / 800)
    loss = level * np.exp(0.25 * rng.standard_normal(t.size))
    assert "divergence" in kinds(prepare_arrays(t, loss))


def test_an_isolated_nan_the_loss_recovers_from_is_a_warning_not_critical():
    t = np.arange(1000)
    loss = 1.0 + 2.0 * np.exp(-t / 100) + 0.05 * np.random.default_rng(10).standard_normal(t.size)
    loss[600] = np.nan
    (finding,) = [f for f in run_detectors(prepare_arrays(t, loss)) if f.kind == "divergence"]
    assert (finding.start_step, finding.end_step, finding.severity) == (600, 600, "warning")
    assert finding.evidence["recovered"] is True
    loss[600:] = np.nan  # the same NaN, and the loss never comes back
    (finding,) = [f for f in run_detectors(prepare_arrays(t, loss)) if f.kind == "divergence"]
    assert (finding.start_step, finding.severity) == (600, "critical")


def test_a_nan_in_a_short_run_is_still_reported():
    loss = np.array([1.0, 3.0, 50.0, 4e4, np.inf, np.nan])
    (finding,) = run_detectors(prepare_arrays(np.arange(6), loss))
    assert finding.kind == "divergence" and finding.start_step <= 4


def test_thresholds_are_validated():
    with pytest.raises(ValueError, match="rise_noise"):
        detect_divergence(prepare_arrays(np.arange(3), np.ones(3)), rise_noise=-1)


def test_a_loss_nan_from_step_0_blames_the_data_not_the_learning_rate():
    # One corrupted input feature: the loss of step 0, computed before any update, is NaN at any
    # rate. "The LR is far too high, use 0.1x" would send the user after the wrong cause.
    import torch

    from lrwatch.analysis import analyze
    from lrwatch.run import Run, Series

    torch.manual_seed(0)
    x, y = torch.randn(64, 4), torch.randn(64, 1)
    x[3, 2] = float("nan")
    model = torch.nn.Linear(4, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-4)
    losses = []
    for _ in range(50):
        loss = torch.nn.functional.mse_loss(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    steps = np.arange(len(losses))
    run = Run("bad-data", "bad-data", metrics={"train/loss": Series(steps, np.array(losses)),
                                               "lr": Series(steps, np.full(50, 1e-4))})  # fmt: skip
    report = analyze(run)
    (finding,) = report.findings
    assert finding.kind == "divergence" and finding.start_step == 0
    assert finding.message == "The loss was nan at its first logged step (0)."
    rec = report.recommendation
    assert rec.action == "check_training" and rec.suggested_lr == pytest.approx(1e-4)
    assert "before any update" in rec.message and "the data" in rec.message


@pytest.mark.parametrize("schedule", ["constant", "cosine"])
def test_one_lucky_epoch_of_a_slow_run_is_not_a_best_level_to_climb_away_from(
    detectors_train, schedule
):
    # 300x below the best rate, as 40 epoch means: epoch 36 happens to dip 1.3 below its
    # neighbours (~4 noise units). Read as the run's best level, the ordinary epochs after it
    # "climbed away" by more than half of the run's small progress.
    run = detectors_train(task="mlp_regression", lr=1e-4, schedule=schedule)
    assert "divergence" not in kinds(per_epoch_log(run, 40))


def test_a_run_thrown_off_by_its_first_steps_that_never_gets_back_is_divergence(detectors_train):
    # Adam at 1.0 (100x its best rate on this task): the first updates throw the autoencoder
    # from 3.15 to ~30, and it settles at a noisy floor above where the untrained model began.
    # Its best level is a dip of that floor, so the climb test saw nothing: "keep, converged".
    from lrwatch.analysis import analyze

    run = detectors_train(task="autoencoder", lr=1.0, optimizer="adam")
    prepared = prepare(run)
    (finding,) = detect_divergence(prepared)
    assert finding.severity == "critical" and finding.start_step == 1
    assert finding.evidence["first_loss"] == pytest.approx(prepared.loss[0])
    assert finding.evidence["end_level"] >= prepared.loss[0]
    assert "worse than it started" in finding.message
    rec = analyze(run).recommendation
    assert rec.action == "decrease_lr" and rec.factor == pytest.approx(0.1)


def thrown_or_not(first: float, *, smoothed: bool = False, back_to: float = 5.0) -> np.ndarray:
    """2,000 points at a level of 5 (noise 0.2) after a first loss of ``first``; the first 2%
    at 8 when ``first`` is below 5 by a lot: a jump. ``smoothed``: an EMA (beta 0.9) of it."""
    rng = np.random.default_rng(3)
    loss = back_to + 0.2 * rng.standard_normal(2000)
    loss[1:40] += 3.0 if first < 4.0 else 0.0
    loss[0] = first
    if smoothed:
        ema, out = loss[0], [loss[0]]
        for value in loss[1:]:
            ema = 0.9 * ema + 0.1 * value
            out.append(ema)
        loss = np.array(out)
    return loss


@pytest.mark.parametrize(
    ("first", "back_to", "smoothed", "found"),
    [
        (3.0, 5.0, False, True),  # jumped from 3 to 8, ended at 5: never back below 3
        (3.0, 2.9, False, False),  # the same jump, but it ended below its first loss
        (4.4, 5.0, False, False),  # a first loss 3 noise units low, no jump: not judged
        (3.0, 5.0, True, False),  # a smoothed log: its step noise says nothing about one point
    ],
)
def test_thrown_off_needs_a_jump_an_end_above_the_first_loss_and_a_raw_log(
    first, back_to, smoothed, found
):
    loss = thrown_or_not(first, smoothed=smoothed, back_to=back_to)
    findings = detect_divergence(prepare_arrays(np.arange(loss.size), loss))
    thrown = [f for f in findings if "first_loss" in f.evidence]
    assert bool(thrown) == found


def test_a_wandering_floor_far_above_the_first_loss_is_still_thrown_off(detectors_train):
    # Adam at 10 (1000x its best rate): a floor at ~15x the first loss that wanders (lag-1
    # persistence ~0.8, as in a smoothed log, where one point's distance from the level is
    # uncertain). No noise puts a loss at 3x its first value or more: it is still reported.
    prepared = prepare(detectors_train(task="autoencoder", lr=10.0, optimizer="adam"))
    (finding,) = detect_divergence(prepared)
    assert finding.evidence["end_level"] >= 3 * finding.evidence["first_loss"]


def test_a_blow_up_in_the_first_steps_that_came_back_is_a_warning_to_lower_the_lr(
    detectors_train,
):
    # Adam at 1.0 (33x its best rate) throws the MLP from 9.1 to ~1,200 in its first 20 steps;
    # the loss comes back to ~3 (the best rate reaches far lower) and looked converged: "keep".
    from lrwatch.analysis import analyze

    run = detectors_train(task="mlp_regression", lr=1.0, optimizer="adam")
    report = analyze(run)
    (divergence,) = [f for f in report.findings if f.kind == "divergence"]
    assert divergence.severity == "warning" and divergence.evidence["came_back"]
    assert divergence.start_step == 1 and divergence.end_step < 50
    assert divergence.evidence["start_level"] >= 3 * divergence.evidence["first_loss"]
    assert divergence.evidence["end_level"] < divergence.evidence["first_loss"]
    rec = report.recommendation
    assert rec.action == "decrease_lr" and rec.suggested_lr == pytest.approx(0.1)


def test_the_floor_after_a_blow_up_that_came_back_keeps_its_own_plateau_warning(
    detectors_train,
):
    # Beside a divergence that stayed up, a plateau is the level it climbed to (a note); after
    # one that came back, it is a floor of its own, still a warning when held up by the rate.
    prepared = prepare(detectors_train(task="autoencoder", lr=1.0, optimizer="adam", seed=8))
    findings = {f.kind: f for f in run_detectors(prepared)}
    assert findings["divergence"].evidence.get("came_back")
    assert findings["plateau"].severity == "warning"


def blow_up_and_back(back_share: float, *, seed: int = 0, n: int = 2000) -> np.ndarray:
    """A loss that converges from 5 towards 2, blows up to ~500 at 10% of the run, and decays
    back to where it was over ``back_share`` of the run, then goes on converging."""
    rng = np.random.default_rng(seed)
    t = np.arange(n, dtype=np.float64)
    loss = 2.0 + 3.0 * np.exp(-t / 60)
    at, span = n // 10, max(int(back_share * n), 1)
    after = t[at:] - at
    # Up in 10 steps, then back by a factor e every span/8 steps: ~1e-3 of the way left at span.
    rise = np.minimum(after / 10, 1.0) * 500 * np.exp(-np.maximum(after - 10, 0) / (span / 8))
    loss[at:] += rise
    return loss + 0.05 * rng.standard_normal(n)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize(("back_share", "found"), [(0.05, False), (0.1, False), (0.4, True)])
def test_a_blow_up_is_reported_when_getting_back_took_a_fifth_of_the_run(back_share, found, seed):
    # The "one isolated spike that recovers is not divergence": back within a tenth of
    # the run, it is not reported; needing 40% of the run to get back, it is - that part of the
    # run only re-learned what the blow-up destroyed.
    loss = blow_up_and_back(back_share, seed=seed)
    findings = [f for f in run_detectors(prepare_arrays(np.arange(loss.size), loss))]
    divergences = [f for f in findings if f.kind == "divergence"]
    assert bool(divergences) == found
    if found:
        (divergence,) = divergences
        assert divergence.severity == "warning" and divergence.evidence["came_back"]
        assert 180 <= divergence.start_step <= 200  # the blow-up begins at step 200
        assert 0.2 <= divergence.evidence["share_of_run_lost"] <= 0.45
        assert divergence.evidence["peak_level"] > 100 * divergence.evidence["best_level"] / 3


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_loss_near_zero_that_wobbles_threefold_has_not_blown_up(seed):
    # A loss converging towards 0 with multiplicative noise and slow swings goes 3x above its
    # best level on its own; it never loses what it learned (a rise past the start), so it is
    # no blow-up.
    rng = np.random.default_rng(seed)
    t = np.arange(2000, dtype=np.float64)
    swing = np.exp(1.2 * np.sin(t / 90))  # 0.3x .. 3.3x, slowly
    loss = (0.02 + 2.0 * np.exp(-t / 50)) * swing * np.exp(0.1 * rng.standard_normal(t.size))
    assert "divergence" not in kinds(prepare_arrays(t, loss))


def test_a_blow_up_at_the_warmup_peak_that_took_most_of_the_run_to_undo_is_not_slow_convergence(
    detectors_train,
):
    # Adam at a warmup-cosine peak of 1.0 (the autoencoder's best Adam rate is ~0.01) throws the
    # loss from ~1.5 to ~10 as the warmup ends, and the rest of the run creeps back down to 1.0.
    # It read as slow convergence: "raise the LR to 3". It is a divergence the loss came back
    # from, at the warmup: lower the peak.
    from lrwatch.analysis import analyze

    run = detectors_train(
        task="autoencoder",
        optimizer="adam",
        lr=1.0,
        steps=600,
        schedule="warmup_cosine",
        warmup_steps=60,
    )
    report = analyze(run)
    assert [f.kind for f in report.findings] == ["divergence"]
    (divergence,) = report.findings
    assert divergence.severity == "warning" and divergence.evidence["came_back"]
    assert divergence.start_step < 60 + 60 and divergence.evidence["share_of_run_lost"] >= 0.2
    rec = report.recommendation
    assert rec.action == "lower_peak_lr" and rec.suggested_lr < 0.3 * 1.0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_plateau_beside_an_oscillation_does_not_point_at_a_divergence_left_out(seed):
    # A loss that bounces step to step, blows up from 1 to 40 and settles at 3, never back: the
    # blow-up is one of the oscillation's swings (left out beside it), and the plateau at 3 must
    # not then read "the divergence finding names the fix" - there is none.
    rng = np.random.default_rng(seed)
    t = np.arange(2000, dtype=np.float64)
    level = np.where(
        t < 500, 1.0 + 9.0 * np.exp(-t / 80), np.maximum(3.0, 40 * np.exp(-(t - 500) / 150))
    )
    loss = level + 0.3 * np.where(t % 2 == 0, 1.0, -1.0) + 0.05 * rng.standard_normal(t.size)
    findings = run_detectors(prepare_arrays(t, loss, t, np.full(t.size, 0.1)))
    assert {f.kind for f in findings} == {"oscillation", "plateau"}
    assert all("divergence" not in f.message for f in findings)

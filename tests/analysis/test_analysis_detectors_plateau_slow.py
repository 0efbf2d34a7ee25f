"""Plateau and slow convergence: flat at a constant rate vs still creeping down at the end."""

from __future__ import annotations

import numpy as np
import pytest

from lrwatch.analysis import analyze
from lrwatch.analysis.detectors import detect_plateau, detect_slow_convergence, run_detectors
from lrwatch.analysis.prepare import prepare, prepare_arrays
from tests.analysis.conftest import per_epoch_log


def kinds(prepared, min_severity="info"):
    order = ("info", "warning", "critical")
    return {
        f.kind
        for f in run_detectors(prepared)
        if order.index(f.severity) >= order.index(min_severity)
    }


def decay_then_flat(n=2000, *, flat_from=600, seed=0, lr_values=None):
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    level = 1.0 + 4.0 * np.clip(1 - t / flat_from, 0, None) ** 2
    loss = level + 0.2 * rng.standard_normal(n)
    lr = np.full(n, 0.1) if lr_values is None else lr_values
    return prepare_arrays(t, loss, t, lr)


def test_flat_loss_at_a_constant_rate_is_a_plateau_starting_near_where_it_flattened():
    (finding,) = detect_plateau(decay_then_flat())
    assert 400 <= finding.start_step <= 900
    assert finding.end_step == 1999


@pytest.mark.parametrize("seed", range(5))
def test_a_plateau_after_a_fast_first_drop_begins_where_the_loss_reached_its_floor(seed):
    """A loss that falls from 4.5 to its floor in ~35 steps, then sits there: the stretch the
    detector judges starts on its 5% grid at step 0 (the drop moves no quarter's median), and
    the plateau was said to begin at step 0."""
    rng = np.random.default_rng(seed)
    t = np.arange(1000)
    loss = 0.6 + 3.9 * np.exp(-t / 8) + 0.05 * rng.standard_normal(t.size)
    reached = int(np.argmax(3.9 * np.exp(-t / 8) < 0.05))  # the drop within one noise sigma
    (finding,) = detect_plateau(prepare_arrays(t, loss, t, np.full(t.size, 0.3)))
    assert reached - 15 <= finding.start_step <= reached + 10, (reached, finding.start_step)
    assert f"stopped improving at step {finding.start_step} " in finding.message
    assert finding.evidence["fraction_of_run"] == pytest.approx(1 - finding.start_step / 1000)


@pytest.mark.parametrize("seed", range(4))
def test_a_slow_descent_under_large_noise_is_slow_convergence_with_no_converged_plateau(seed):
    """A loss falling 0.5 in 400 steps under noise of 0.4: the last stretch's quarter medians
    lie within half a sigma, so the plateau detector alone calls it converged, while slow
    convergence's test over the last third sees the descent. Both were reported: "still
    falling steadily" beside "stopped improving ... looks like convergence"."""
    rng = np.random.default_rng(seed)
    t = np.arange(400)
    loss = 4.1 - 0.5 * t / 400 + 0.4 * rng.standard_normal(t.size)
    prepared = prepare_arrays(t, loss, t, np.full(t.size, 1e-4))
    assert [f.severity for f in detect_plateau(prepared)] == ["info"]  # alone, it says converged
    assert [(f.kind, f.severity) for f in run_detectors(prepared)] == [
        ("slow_convergence", "warning")
    ]


def test_a_plateau_in_a_run_without_an_lr_says_the_rate_was_not_logged():
    # No LR series: the flat stretch is read as one at a constant rate, and the message says
    # so instead of claiming the rate was constant - also beside an oscillation.
    with_lr = decay_then_flat()
    (logged,) = detect_plateau(with_lr)
    assert "at a constant learning rate" in logged.message
    (unlogged,) = detect_plateau(prepare_arrays(with_lr.steps, with_lr.loss))
    assert "with no LR logged" in unlogged.message and "constant learning" not in unlogged.message
    t = np.arange(3000)
    rng = np.random.default_rng(5)
    wave = 1.0 + 0.3 * np.sin(2 * np.pi * t / 16) + 0.2 * rng.standard_normal(t.size)
    (beside,) = [f for f in run_detectors(prepare_arrays(t, wave)) if f.kind == "plateau"]
    assert "with no LR logged" in beside.message and "oscillation finding" in beside.message


def test_no_plateau_when_the_rate_changes_during_the_flat_stretch():
    lr = np.where(np.arange(2000) < 1200, 0.1, 0.01)
    assert detect_plateau(decay_then_flat(lr_values=lr)) == []


def test_a_run_still_clearly_improving_has_no_plateau():
    t = np.arange(2000)
    loss = 10.0 - 0.004 * t + 0.2 * np.random.default_rng(1).standard_normal(t.size)
    assert detect_plateau(prepare_arrays(t, loss, t, np.full(t.size, 0.1))) == []


@pytest.mark.parametrize("every", [1, 2])
def test_a_loss_still_falling_tenfold_under_spikes_far_above_it_has_no_plateau(
    detectors_train, every
):
    # Adam at its best rate takes the classifier's loss from ~2.4e-3 (step 1000) to ~2e-4 (step
    # 3000) while rare hard batches spike to 0.06-0.2: the noise scale (~2.8e-3) is 4x the
    # loss's median, so the tenfold fall was "flat within half a sigma" and the run got a
    # plateau warning from step 1350, "a floor the learning rate holds it at" - a decay
    # recommended to a run still learning.
    run = detectors_train(
        task="mlp_classification", optimizer="adam", lr=0.003, batch_size=64, steps=3000, seed=8,
        task_seed=8,
    )  # fmt: skip
    steps, loss, lr = (
        series[::every] for series in (run.loss.steps, run.loss.values, run.lr.values)
    )
    assert detect_plateau(prepare_arrays(steps, loss, steps, lr)) == []


def test_linear_creep_is_slow_convergence_and_fast_decay_is_not():
    t = np.arange(3000)
    rng = np.random.default_rng(2)
    creep = 10.0 - 0.002 * t + 0.2 * rng.standard_normal(t.size)
    fast = 4.0 + 6.0 * np.exp(-t / 150) + 0.2 * rng.standard_normal(t.size)
    assert [f.kind for f in detect_slow_convergence(prepare_arrays(t, creep))] == [
        "slow_convergence"
    ]
    assert detect_slow_convergence(prepare_arrays(t, fast)) == []


@pytest.mark.parametrize(
    ("task", "lr"),
    # 1e-4 on mlp_regression is 300x below its best rate: progress within a few noise units,
    # found by the steady-descent path (the last third alone shows < 3 standard errors).
    [("quadratic", 1e-3), ("mlp_classification", 3e-4), ("mlp_regression", 1e-4)],
)
def test_a_rate_far_below_the_best_is_slow_convergence(detectors_train, task, lr):
    assert "slow_convergence" in kinds(prepare(detectors_train(task=task, lr=lr)), "warning")


@pytest.mark.parametrize("schedule", ["cosine", "warmup_cosine"])
@pytest.mark.parametrize(("task", "lr"), [("autoencoder", 3e-4), ("quadratic", 1e-4)])
def test_a_rate_so_small_the_loss_never_moves_under_a_cosine_is_slow_convergence(
    detectors_train, task, lr, schedule
):
    # 333x and 3000x below these tasks' best rates, as below at a constant rate: the schedule
    # that lowers the rate after its peak does not explain a loss that never moved ("keep").
    report = analyze(detectors_train(task=task, lr=lr, schedule=schedule))
    (slow,) = [f for f in report.findings if f.kind == "slow_convergence"]
    assert slow.evidence["no_progress"] is True
    assert report.recommendation.action == "increase_lr"


def white_noise_around(level, n=1500, *, seed=4):
    return level + 0.05 * np.random.default_rng(seed).standard_normal(n)


def test_a_loss_that_never_moves_at_a_constant_rate_is_slow_convergence():
    loss = white_noise_around(2.0)
    t = np.arange(loss.size)
    (finding,) = detect_slow_convergence(prepare_arrays(t, loss, t, np.full(t.size, 1e-5)))
    assert finding.severity == "warning"
    assert finding.evidence["no_progress"] is True
    assert (finding.start_step, finding.end_step) == (0, t.size - 1)


def test_a_level_that_wanders_is_not_read_as_no_progress():
    # A floor held up by a rate far too high bounces the same way around where it started, but
    # its level wanders with the parameters (correlated losses): not "the rate is too small".
    rng = np.random.default_rng(5)
    wander = np.zeros(1500)
    for i in range(1, wander.size):
        wander[i] = 0.9 * wander[i - 1] + 0.05 * rng.standard_normal()
    t = np.arange(wander.size)
    prepared = prepare_arrays(t, 2.0 + wander, t, np.full(t.size, 1.0))
    assert detect_slow_convergence(prepared) == []


def test_a_loss_that_never_moves_under_a_cosine_is_slow_convergence():
    loss = white_noise_around(2.0)
    t = np.arange(loss.size)
    cosine = 1e-5 * 0.5 * (1 + np.cos(np.pi * t / t.size))
    (finding,) = detect_slow_convergence(prepare_arrays(t, loss, t, cosine))
    assert finding.evidence["no_progress"] is True


def test_no_progress_is_not_judged_while_the_rate_is_still_warming_up():
    # During a warmup the loss often waits for the rate to grow.
    loss = white_noise_around(2.0)
    t = np.arange(loss.size)
    warmup = np.minimum(1.0, (t + 1) / 2000) * 0.1
    assert detect_slow_convergence(prepare_arrays(t, loss, t, warmup)) == []


@pytest.mark.parametrize(("task", "lr"), [("autoencoder", 3e-4), ("quadratic", 1e-4)])
def test_a_rate_so_small_the_loss_never_moves_is_slow_convergence(detectors_train, task, lr):
    # 333x and 3000x below these tasks' best rates: the loss stays within its noise.
    findings = run_detectors(prepare(detectors_train(task=task, lr=lr)))
    slow = [f for f in findings if f.kind == "slow_convergence"]
    assert [f.severity for f in slow] == ["warning"]


def test_a_plateau_after_a_climb_is_a_note_beside_the_divergence():
    t = np.arange(2000)
    rng = np.random.default_rng(6)
    level = np.where(t < 500, 3.0 - 2.0 * t / 500, np.minimum(1.0 + (t - 500) / 100, 4.0))
    prepared = prepare_arrays(t, level + 0.05 * rng.standard_normal(t.size), t, np.full(2000, 0.1))
    findings = {f.kind: f for f in run_detectors(prepared)}
    assert findings["divergence"].severity in ("warning", "critical")
    plateau = findings["plateau"]
    assert plateau.severity == "info"
    assert "the level it climbed to, not convergence" in plateau.message


@pytest.mark.parametrize(
    ("task", "lr", "schedule"),
    [
        ("mlp_regression", 0.03, "constant"),
        ("mlp_classification", 0.3, "cosine"),
        ("quadratic", 0.3, "constant"),
        ("autoencoder", 0.1, "warmup_cosine"),
        ("quadratic", 0.1, "cosine"),
    ],
)
def test_healthy_noisy_runs_get_no_warning(detectors_train, task, lr, schedule):
    prepared = prepare(detectors_train(task=task, lr=lr, schedule=schedule, seed=8, task_seed=8))
    assert kinds(prepared, "warning") == set()


@pytest.mark.parametrize("epochs", [40, 50])
@pytest.mark.parametrize("schedule", ["constant", "cosine"])
@pytest.mark.parametrize("seed", [8, 9])
def test_a_healthy_per_epoch_log_still_falling_gently_is_not_slow_convergence(
    detectors_train, seed, schedule, epochs
):
    # The best constant rate of mlp_regression (higher ones plateau higher) still improves
    # gently at the end; the first epoch's mean holds the fast early drop. Starting the
    # progress after three epochs read the gentle tail as most of it: "rate too small".
    run = detectors_train(
        task="mlp_regression", lr=0.03, schedule=schedule, seed=seed, task_seed=seed
    )
    assert kinds(per_epoch_log(run, epochs), "warning") == set()


@pytest.mark.parametrize("epochs", [40, 50])
@pytest.mark.parametrize("seed", [8, 9])
def test_a_per_epoch_log_of_a_rate_far_too_small_is_slow_convergence(detectors_train, seed, epochs):
    run = detectors_train(task="mlp_regression", lr=1e-4, seed=seed, task_seed=seed)
    assert "slow_convergence" in kinds(per_epoch_log(run, epochs), "warning")


def flat_with_level(level, *, seed=3):
    t = np.arange(level.size)
    noise = 0.2 * np.random.default_rng(seed).standard_normal(level.size)
    return prepare_arrays(t, 1.0 + level + noise, t, np.full(t.size, 0.1))


def test_a_level_that_keeps_wandering_at_a_constant_rate_is_a_plateau_warning():
    rng = np.random.default_rng(4)
    level = np.zeros(3000)
    for i in range(1, level.size):  # AR(1) level, correlation 0.95 per step: a wandering floor
        level[i] = 0.95 * level[i - 1] + 0.05 * rng.standard_normal()
    # wander disabled, so the persistence test alone must carry the warning
    (finding,) = detect_plateau(flat_with_level(level), wander_warning=1e6)
    assert finding.severity == "warning"
    assert finding.evidence["persistence"] >= 0.18


def test_a_flat_level_with_white_noise_is_only_a_note():
    (finding,) = detect_plateau(flat_with_level(np.zeros(3000)))
    assert finding.severity == "info"
    assert abs(finding.evidence["persistence"]) < 0.1


def _same_shape_at(points: int, level_of_time, seed: int):
    """One curve on normalised time (0..1), logged at ``points`` steps with the same noise."""
    t = np.linspace(0.0, 1.0, points)
    loss = level_of_time(t) + 0.05 * np.random.default_rng(seed).standard_normal(points)
    steps = np.arange(points)
    return prepare_arrays(steps, loss, steps, np.full(points, 0.1))


@pytest.mark.parametrize("points", [1_000, 30_000, 300_000])
@pytest.mark.parametrize("time_constant", [0.1, 0.2])
def test_a_run_converging_smoothly_is_no_floor_however_long(points, time_constant):
    # The block medians of a long run are precise: the slow curvature of a loss still
    # converging (an exponential tail, after the linear detrend) read as a wandering level, and
    # 30,000- and 300,000-step runs got "a floor the learning rate holds it at" (wander 2.9, 6.9)
    # where the same curve at 1,000 steps got a note.
    prepared = _same_shape_at(points, lambda t: 0.3 + 2.0 * np.exp(-t / time_constant), seed=0)
    found = detect_plateau(prepared)  # none at all where the run still clearly improves
    assert all(finding.severity == "info" for finding in found), found


@pytest.mark.parametrize("points", [1_000, 100_000])
@pytest.mark.parametrize("seed", [0, 1])
def test_a_level_wandering_on_the_runs_own_time_scale_is_a_floor_however_long(points, seed):
    # A random walk tied down at both ends (a bridge): the level wanders but ends where it was.
    walk = np.cumsum(np.random.default_rng(seed + 10).standard_normal(65)) * 0.03
    knots = walk - np.linspace(walk[0], walk[-1], walk.size)
    wander = np.linspace(0.0, 1.0, 65)

    def level(t):
        return 0.5 + 2.0 * np.exp(-t / 0.05) + np.interp(t, wander, knots)

    (finding,) = detect_plateau(_same_shape_at(points, level, seed=seed), persistence_warning=1.0)
    assert finding.severity == "warning" and finding.evidence["wander"] >= 1.6, finding.evidence


def test_a_too_high_constant_rate_real_run_gets_a_plateau_warning(detectors_train):
    # mlp_regression at 5x its best rate: flat early, its level held up by the rate.
    prepared = prepare(detectors_train(task="mlp_regression", lr=0.15))
    assert "plateau" in kinds(prepared, "warning")


def test_a_loss_converged_to_float_rounding_is_a_note_and_keeps_its_rate():
    # Real training that can reach zero loss: SGD fitting noiseless linear targets. The loss
    # falls from ~6 to ~1e-14, where float32 rounding makes its last digits wander; decaying
    # the rate cannot help a loss that is already at its minimum.
    import torch

    from lrwatch.analysis import analyze
    from lrwatch.run import Run, Series

    torch.manual_seed(7)
    x = torch.randn(256, 4)
    y = x @ torch.randn(4, 1)
    model = torch.nn.Linear(4, 1, bias=False)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    batches = torch.Generator().manual_seed(7)
    losses = []
    for _ in range(1000):
        pick = torch.randint(0, 256, (32,), generator=batches)
        loss = torch.nn.functional.mse_loss(model(x[pick]), y[pick])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert np.median(losses[-100:]) < 1e-10 < losses[0]
    steps = np.arange(len(losses))
    run = Run("zero", "zero", metrics={"train/loss": Series(steps, np.array(losses)),
                                       "lr": Series(steps, np.full(steps.size, 0.1))})  # fmt: skip
    report = analyze(run)
    assert {f.kind: f.severity for f in report.findings} == {"plateau": "info"}
    assert report.recommendation.action == "keep"


def test_a_plateau_on_an_oscillating_loss_stays_a_note():
    t = np.arange(3000)
    rng = np.random.default_rng(5)
    loss = 1.0 + 0.3 * np.sin(2 * np.pi * t / 16) + 0.2 * rng.standard_normal(t.size)
    findings = run_detectors(prepare_arrays(t, loss, t, np.full(t.size, 0.1)))
    by_kind = {f.kind: f.severity for f in findings}
    assert by_kind.get("oscillation") == "warning"
    assert by_kind.get("plateau", "info") == "info"


def test_thresholds_are_validated():
    with pytest.raises(ValueError, match="min_fraction"):
        detect_plateau(decay_then_flat(), min_fraction=1.5)
    with pytest.raises(ValueError, match="late_share"):
        detect_slow_convergence(decay_then_flat(), late_share=-0.1)
    with pytest.raises(ValueError, match="persistence_warning"):
        detect_plateau(decay_then_flat(), persistence_warning=2.0)
    with pytest.raises(ValueError, match="steady_min_steadiness"):
        detect_slow_convergence(decay_then_flat(), steady_min_steadiness=-3.0)


def _full_batch_losses(*, train_the_model: bool, steps: int = 300) -> list[float]:
    """Full-batch SGD on a linear regression; with ``train_the_model=False`` the optimizer holds
    another model's parameters (a real bug), so nothing the loss depends on ever moves."""
    import torch

    torch.manual_seed(3)
    x, y = torch.randn(64, 4), torch.randn(64, 1)
    model, other = torch.nn.Linear(4, 1), torch.nn.Linear(4, 1)
    optimizer = torch.optim.SGD((model if train_the_model else other).parameters(), lr=0.1)
    losses = []
    for _ in range(steps):
        loss = torch.nn.functional.mse_loss(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def test_a_loss_that_never_changes_at_all_points_at_the_training_step_not_the_lr():
    from lrwatch.analysis import analyze
    from lrwatch.run import Run, Series

    def report_of(losses):
        steps = np.arange(len(losses))
        metrics = {"train/loss": Series(steps, np.array(losses)),
                   "lr": Series(steps, np.full(steps.size, 0.1))}  # fmt: skip
        return analyze(Run("r", "r", metrics=metrics))

    frozen = _full_batch_losses(train_the_model=False)
    assert len(set(frozen)) == 1  # not one digit moved
    report = report_of(frozen)
    (finding,) = report.findings
    assert (finding.kind, finding.severity) == ("slow_convergence", "warning")
    assert "did not change at all" in finding.message and finding.evidence["never_changed"]
    assert report.recommendation.action == "check_training"
    assert report.recommendation.evidence["fallback_lr"] == pytest.approx(1.0)
    # Full-batch training that converges to an exact fixed point is flat at its end, not frozen.
    trained = _full_batch_losses(train_the_model=True)
    assert trained[-1] == trained[-2] < trained[0]
    assert report_of(trained).recommendation.action != "check_training"


def test_runs_of_64_to_80_points_print_no_numpy_warning(detectors_train):
    """A fifth of such a run is under the 16 points the wander measure cuts a plateau into: a
    flat end of 14 points left blocks empty, and `lrwatch analyze` printed numpy's "Mean of
    empty slice" (found on a real Adam run cut at 68 steps)."""
    import warnings

    from lrwatch.analysis import analyze

    run = detectors_train(task="autoencoder", optimizer="adam", lr=3e-3, steps=120, seed=0)
    for n in range(64, 81):
        prefix = run.with_metrics(
            {k: type(s)(s.steps[:n], s.values[:n]) for k, s in run.metrics.items()}
        )
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            analyze(prefix)


@pytest.mark.parametrize(("task", "lr"), [("mlp_classification", 1e-3), ("quadratic", 1e-3)])
def test_a_rate_too_small_under_a_step_decay_is_slow_convergence_before_the_first_decay(
    detectors_train, task, lr
):
    # 100x below these tasks' best rates, under StepLR (x0.1 at each third): the loss creeps
    # until the first decay, and the decayed rates then hold it nearly still to the end, which
    # the whole run's last third reads as converged ("keep").
    report = analyze(detectors_train(task=task, lr=lr, schedule="step"))
    (slow,) = [f for f in report.findings if f.kind == "slow_convergence"]
    assert slow.severity == "warning"
    assert slow.evidence["before_decay_at_step"] == 333
    assert (slow.start_step, slow.end_step) == (0, 332)
    assert "Before the LR was first lowered, at step 333" in slow.message
    rec = report.recommendation
    assert (rec.action, rec.suggested_lr) == ("increase_lr", pytest.approx(3 * lr))
    assert "hold it longer before the first decay" in rec.message


@pytest.mark.parametrize(("task", "lr"), [("mlp_classification", 0.3), ("quadratic", 0.3)])
def test_the_best_rate_under_a_step_decay_is_not_slow_convergence(detectors_train, task, lr):
    prepared = prepare(detectors_train(task=task, lr=lr, schedule="step", seed=8, task_seed=8))
    assert kinds(prepared, "warning") == set()


@pytest.mark.parametrize(("task", "lr"), [("mlp_classification", 1e-3), ("quadratic", 1e-3)])
def test_a_rate_too_small_under_a_step_decay_is_found_in_a_50_epoch_log(detectors_train, task, lr):
    # The runs above as 50 per-epoch means: 16 of them before the first decay, fewer than the 36
    # a whole run needs, and judged all the same (each is an epoch's mean, not one draw).
    prepared = per_epoch_log(detectors_train(task=task, lr=lr, schedule="step"), 50)
    (slow,) = detect_slow_convergence(prepared)
    assert slow.severity == "warning"
    assert slow.evidence["before_decay_at_step"] == 339  # the end of the epoch holding step 333


@pytest.mark.parametrize(("task", "lr"), [("mlp_classification", 0.3), ("quadratic", 0.3)])
def test_the_best_rate_under_a_step_decay_is_not_slow_in_a_50_epoch_log(detectors_train, task, lr):
    run = detectors_train(task=task, lr=lr, schedule="step", seed=8, task_seed=8)
    assert kinds(per_epoch_log(run, 50), "warning") == set()


def test_the_stretch_before_a_step_decay_needs_16_points():
    # A linear creep to the decay, then flat: judged from 16 points before the decay, not 15.
    rng = np.random.default_rng(7)
    for before, found in ((15, False), (16, True)):
        t = np.arange(3 * before)
        loss = 10.0 - 0.1 * np.minimum(t, before) + 0.05 * rng.standard_normal(t.size)
        lr = np.where(t < before, 0.1, 0.01)
        assert bool(detect_slow_convergence(prepare_arrays(t, loss, t, lr))) is found


def test_only_a_step_down_from_a_held_rate_opens_the_stretch_before_the_decay():
    # A linear creep over the first third, then flat: under a step decay at step 1000 the
    # stretch before it is slow; the same loss under a smooth decay or a rate that steps *up*
    # is judged as a whole run, whose flat end reads as converged.
    t = np.arange(3000)
    rng = np.random.default_rng(5)
    loss = 10.0 - 0.002 * np.minimum(t, 1000) + 0.2 * rng.standard_normal(t.size)
    step = np.where(t < 1000, 0.1, 0.01)
    (found,) = detect_slow_convergence(prepare_arrays(t, loss, t, step))
    assert found.evidence["before_decay_at_step"] == 1000
    for lr in (np.linspace(0.1, 0.001, t.size), np.where(t < 1000, 0.1, 0.3)):
        assert detect_slow_convergence(prepare_arrays(t, loss, t, lr)) == []

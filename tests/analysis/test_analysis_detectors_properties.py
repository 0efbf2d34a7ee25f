"""Truths every detector keeps: invariance to scale/shift/logging interval, findings inside the
run, short runs not judged, and no crash on any series (Hypothesis)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from lrwatch import keys
from lrwatch.analysis.detectors import DETECTORS, MIN_STEPS_TO_JUDGE, run_detectors
from lrwatch.analysis.findings import KINDS
from lrwatch.analysis.prepare import prepare, prepare_arrays
from lrwatch.errors import InputError
from lrwatch.run import Run, Series

CASES = {
    "diverging": dict(task="mlp_regression", lr=1.0),
    "finite_climb": dict(task="quadratic", lr=0.3, momentum=0.98),
    "oscillating": dict(task="quadratic", lr=0.03, momentum=0.99),
    "slow": dict(task="mlp_classification", lr=3e-4),
    "healthy": dict(task="mlp_classification", lr=0.3),
    "plateau": dict(task="mlp_regression", lr=0.15),
}


def kinds_of(steps, loss, lr=None):
    prepared = prepare_arrays(steps, loss, None if lr is None else steps, lr)
    return sorted({f.kind for f in run_detectors(prepared)})


def test_registry_names_every_kind():
    assert set(DETECTORS) == set(KINDS)


@pytest.mark.parametrize("name", sorted(CASES))
def test_scale_shift_and_logging_interval_do_not_change_the_kinds(detectors_train, name):
    run = detectors_train(**CASES[name])
    steps, loss, lr = run.loss.steps, run.loss.values, run.lr.values
    base = kinds_of(steps, loss, lr)
    for factor in (1e-3, 7.0, 1e8):
        assert kinds_of(steps, loss * factor, lr) == base, factor
    # A negative log-likelihood shifted far below zero is judged the same.
    assert kinds_of(steps, loss - 1000.0, lr) == base
    # Logging every 10th step (same points, step numbers x10) changes nothing either.
    assert kinds_of(steps * 10, loss, lr) == base


@pytest.mark.parametrize("name", sorted(CASES))
def test_findings_lie_inside_the_run(detectors_train, name):
    prepared = prepare(detectors_train(**CASES[name]))
    for finding in run_detectors(prepared):
        assert prepared.steps[0] <= finding.start_step <= finding.end_step <= prepared.steps[-1]
        assert finding.message and finding.evidence


def test_runs_too_short_to_judge_get_no_finding():
    rng = np.random.default_rng(0)
    loss = np.linspace(10, 0, MIN_STEPS_TO_JUDGE - 1) ** 3 + rng.standard_normal(29)
    assert run_detectors(prepare_arrays(np.arange(loss.size), loss)) == []


def test_prepare_sorts_dedupes_restores_infinity_and_aligns_the_lr():
    run = Run(
        id="r",
        metrics={
            keys.LOSS: Series(np.array([2, 0, 1, 1]), np.array([3.0, 1.0, 9.0, 2.0])),
            keys.LR: Series(np.array([0, 2]), np.array([0.1, 1.7976931348623157e308])),
            "other": Series(np.array([0]), np.array([0.0])),
        },
    )
    prepared = prepare(run)
    assert prepared.steps.tolist() == [0, 1, 2]
    assert prepared.loss.tolist() == [1.0, 2.0, 3.0]  # last value of a repeated step wins
    assert prepared.lr.tolist() == [0.1, 0.1, 0.1]  # the infinite LR is dropped, not aligned
    loss_inf = Run(id="x", metrics={keys.LOSS: Series([0, 1], [1.0, 1.7976931348623157e308])})
    assert prepare(loss_inf).first_nonfinite == 1


def test_prepare_refuses_a_run_without_loss():
    with pytest.raises(InputError, match="no loss"):
        prepare(Run(id="r", metrics={keys.LR: Series([0], [0.1])}))


values = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(min_value=-1e300, max_value=1e300),
    st.sampled_from([0.0, 1.0, -1.0, 1e8, -1e8, 1e-300]),
)


def test_a_short_run_near_the_float_limit_prints_no_numpy_warning():
    # Too short to judge but NaN at its end: the divergence onset differenced values near
    # 1e308 outside the detectors' errstate, and numpy printed "overflow encountered".
    import warnings

    steps = np.arange(4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        prepared = prepare_arrays(steps, np.array([1e308, -1e308, 1e308, np.nan]), steps, None)
        assert [f.kind for f in run_detectors(prepared)] == ["divergence"]


@given(
    loss=st.lists(values, min_size=0, max_size=600),
    every=st.integers(min_value=1, max_value=50),
    duplicates=st.booleans(),
    constant=st.booleans(),
    with_lr=st.booleans(),
)
def test_any_series_never_crashes(loss, every, duplicates, constant, with_lr):
    loss = np.array(loss, dtype=np.float64)
    if constant and loss.size:
        loss[:] = loss[0]
    steps = np.arange(loss.size) * every
    if duplicates and loss.size > 2:
        steps[1::3] = steps[0::3][: steps[1::3].size]
    lr = np.full(loss.size, 0.01) if with_lr else None
    with np.errstate(all="ignore"):
        prepared = prepare_arrays(steps, loss, None if lr is None else steps, lr)
        findings = run_detectors(prepared)
    for finding in findings:
        assert finding.kind in KINDS
        assert prepared.steps[0] <= finding.start_step <= finding.end_step <= prepared.steps[-1]

"""find_lr on real tiny models: the LR schedule, early stopping, cycling data, state restored."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

import lrwatch
from lrwatch.errors import InputError
from lrwatch.lr_finder import RangeTestResult, find_lr, lr_schedule
from tests.lr_finder.lr_finder_helpers import assert_same_state, snapshot, task_setup


def test_sgd_momentum_state_is_restored_bit_for_bit():
    model, opt, loss_fn, batches = task_setup(optimizer="sgd", momentum=0.9)
    assert all("momentum_buffer" in s for s in opt.state.values())  # something to restore
    before = snapshot(model, opt)
    result = find_lr(model, opt, loss_fn, itertools.islice(batches, 60), num_steps=60, log=False)
    assert isinstance(result, RangeTestResult)
    assert len(result.lrs) > 10
    # The test really trained (the loss moved), and still nothing of it is left behind.
    assert np.ptp(result.losses[np.isfinite(result.losses)]) > 0
    assert_same_state(before, model, opt)
    assert opt.param_groups[0]["lr"] == 0.01


def test_stopping_on_divergence_still_restores_adam_state():
    model, opt, loss_fn, batches = task_setup(optimizer="adam", momentum=0.0)
    before = snapshot(model, opt)
    result = find_lr(model, opt, loss_fn, batches, end_lr=100.0, num_steps=200, log=False)
    assert result.stopped_early
    assert len(result.lrs) < 200
    last = result.smoothed[-1]
    assert not math.isfinite(last) or last > 4.0 * np.nanmin(result.smoothed)
    assert_same_state(before, model, opt)


def test_non_finite_loss_stops_the_test_and_params_come_back_finite():
    # Plain SGD on the quadratic overflows at LRs far above its stability limit (~2/lambda_max).
    model, opt, loss_fn, batches = task_setup(task="quadratic", momentum=0.0)
    before = snapshot(model, opt)
    result = find_lr(
        model, opt, loss_fn, batches, start_lr=1e3, end_lr=1e30, num_steps=100,
        diverge_threshold=1e300, log=False,
    )  # fmt: skip
    assert result.stopped_early and not math.isfinite(result.losses[-1])
    assert all(bool(torch.isfinite(p).all()) for p in model.parameters())
    assert_same_state(before, model, opt)


def test_data_shorter_than_the_test_is_cycled():
    model, opt, loss_fn, batches = task_setup(momentum=0.9)
    short = list(itertools.islice(batches, 7))  # a re-iterable "loader" of 7 batches
    before = snapshot(model, opt)
    result = find_lr(
        model, opt, loss_fn, short, start_lr=1e-6, end_lr=1e-3, num_steps=30, log=False
    )
    assert len(result.lrs) == 30 and not result.stopped_early
    assert_same_state(before, model, opt)


def test_one_shot_iterator_shorter_than_the_test_is_replayed():
    model, opt, loss_fn, batches = task_setup(momentum=0.0)
    one_shot = iter(list(itertools.islice(batches, 5)))
    result = find_lr(
        model, opt, loss_fn, one_shot, start_lr=1e-6, end_lr=1e-3, num_steps=23, log=False
    )
    assert len(result.lrs) == 23
    # Batch 0 and batch 5 are the same batch at nearly the same parameters: similar losses.
    assert result.losses[5] == pytest.approx(result.losses[0], rel=0.05)


def test_exception_inside_the_test_restores_state_and_propagates():
    model, opt, loss_fn, batches = task_setup(momentum=0.9)
    before = snapshot(model, opt)
    calls = []

    def failing_loss(outputs, targets):
        calls.append(1)
        if len(calls) == 8:
            raise RuntimeError("boom")
        return loss_fn(outputs, targets)

    with pytest.raises(RuntimeError, match="boom"):
        find_lr(model, opt, failing_loss, batches, num_steps=50, log=False)
    assert_same_state(before, model, opt)


def test_every_param_group_follows_the_schedule():
    model, _, loss_fn, batches = task_setup(momentum=0.0, warm_steps=0)
    first, second = list(model.children())[0], list(model.children())[2]
    opt = torch.optim.SGD([{"params": first.parameters()}, {"params": second.parameters()}], lr=0.1)
    seen = []
    original_step = opt.step

    def recording_step(*args, **kwargs):
        seen.append([g["lr"] for g in opt.param_groups])
        return original_step(*args, **kwargs)

    opt.step = recording_step
    result = find_lr(
        model, opt, loss_fn, batches, start_lr=1e-5, end_lr=1e-2, num_steps=10, mode="linear",
        log=False,
    )  # fmt: skip
    assert [pair[0] for pair in seen] == [pair[1] for pair in seen] == result.lrs.tolist()
    np.testing.assert_allclose(result.lrs, np.linspace(1e-5, 1e-2, 10))
    assert [g["lr"] for g in opt.param_groups] == [0.1, 0.1]


def test_exponential_schedule_spans_the_range_geometrically():
    lrs = lr_schedule(1e-7, 10.0, 100, "exp")
    assert lrs[0] == pytest.approx(1e-7) and lrs[-1] == pytest.approx(10.0)
    ratios = lrs[1:] / lrs[:-1]
    np.testing.assert_allclose(ratios, ratios[0])


@pytest.mark.parametrize(
    "kwargs",
    [
        {"num_steps": 2},
        {"start_lr": 1.0, "end_lr": 0.1},
        {"start_lr": 0.0},
        {"mode": "cosine"},
        {"smooth": 0.0},
        {"diverge_threshold": 1.0},
        {"method": "magic"},
    ],
)
def test_bad_arguments_are_input_errors(kwargs):
    model, opt, loss_fn, batches = task_setup(warm_steps=0)
    with pytest.raises(InputError):
        find_lr(model, opt, loss_fn, batches, log=False, **kwargs)


def test_empty_or_malformed_data_is_an_input_error():
    model, opt, loss_fn, _ = task_setup(warm_steps=0)
    with pytest.raises(InputError, match="no batches"):
        find_lr(model, opt, loss_fn, [], log=False)
    with pytest.raises(InputError, match="no batches"):
        find_lr(model, opt, loss_fn, iter([]), log=False)
    with pytest.raises(InputError, match="pair"):
        find_lr(model, opt, loss_fn, [torch.zeros(4, 16)], log=False)
    # Two-item batches that are no pair: a dict unpacks into its keys, a tensor into its rows.
    inputs, targets = torch.zeros(4, 16), torch.zeros(4, dtype=torch.long)
    with pytest.raises(InputError, match="batch 0 was dict \\(keys 'x', 'y'\\)"):
        find_lr(model, opt, loss_fn, [{"x": inputs, "y": targets}], log=False)
    with pytest.raises(InputError, match="batch 0 was Tensor"):
        find_lr(model, opt, loss_fn, [torch.zeros(2, 16)], log=False)
    # A list pair, as a DataLoader collates, is fine.
    find_lr(model, opt, loss_fn, [[inputs, targets]], num_steps=3, log=False)


class _KeywordModel(torch.nn.Module):
    """A Hugging Face model's contract: ``model(**batch)`` returns a dict-like output holding
    ``loss`` when the batch holds ``labels`` (or a tuple, loss first, with return_dict=False)."""

    def __init__(self, return_dict: bool = True) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = torch.nn.Sequential(
            torch.nn.Linear(16, 32), torch.nn.Tanh(), torch.nn.Linear(32, 1)
        )
        self.return_dict = return_dict

    def forward(self, input_ids, labels=None):
        logits = self.net(input_ids)
        loss = None if labels is None else torch.nn.functional.mse_loss(logits, labels)
        if not self.return_dict:
            return (logits,) if loss is None else (loss, logits)
        return {"logits": logits} if loss is None else {"loss": loss, "logits": logits}


@pytest.mark.parametrize("return_dict", [True, False])
def test_a_model_that_computes_its_own_loss_from_a_dict_batch(return_dict):
    # Hugging Face users had to wrap their model: find_lr took (inputs, targets) pairs only.
    _, _, _, batches = task_setup(warm_steps=0)
    pairs = list(itertools.islice(batches, 40))
    dicts = [{"input_ids": x, "labels": y} for x, y in pairs]
    model = _KeywordModel(return_dict)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    before = snapshot(model, optimizer)
    by_keywords = find_lr(model, optimizer, None, dicts, num_steps=60, log=False)
    assert_same_state(before, model, optimizer)

    def loss_of(outputs, targets):  # the same loss, computed outside the model
        logits = outputs["logits"] if return_dict else outputs[0]
        return torch.nn.functional.mse_loss(logits, targets)

    by_pairs = find_lr(model, optimizer, loss_of, pairs, num_steps=60, log=False)
    assert len(by_keywords.losses) > 30
    np.testing.assert_array_equal(by_keywords.lrs, by_pairs.lrs)
    np.testing.assert_array_equal(by_keywords.losses, by_pairs.losses)
    assert by_keywords.suggestion.lr == by_pairs.suggestion.lr


def test_a_dict_batch_without_a_loss_or_a_pair_for_the_model_s_loss_is_an_input_error():
    model = _KeywordModel()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    inputs, targets = torch.zeros(4, 16), torch.zeros(4, 1)
    with pytest.raises(InputError, match="must return its loss .* returned dict without one"):
        find_lr(model, optimizer, None, [{"input_ids": inputs}], log=False)  # no labels
    with pytest.raises(InputError, match="with loss_fn=None each batch must be a dict"):
        find_lr(model, optimizer, None, [(inputs, targets)], log=False)


def test_public_api_points_at_the_lr_finder():
    assert lrwatch.find_lr is find_lr
    assert lrwatch.suggest_lr is lrwatch.lr_finder.suggest_lr


def test_result_suggests_and_draws():
    model, opt, loss_fn, batches = task_setup(optimizer="adam", momentum=0.0)
    result = find_lr(model, opt, loss_fn, batches, num_steps=120, log=False)
    assert result.suggestion is not None
    assert result.lrs.min() <= result.suggestion.lr <= result.lrs.max()
    assert result.suggest("minimum").method == "minimum"
    fig = result.figure()
    assert fig.layout.xaxis.type == "log"
    assert any(f"{result.suggestion.lr:.3g}" in (trace.name or "") for trace in fig.data)


def test_negative_losses_do_not_stop_the_test_at_once():
    model, opt, loss_fn, batches = task_setup(momentum=0.0)

    def shifted(outputs, targets):  # a loss below zero, like a negative log-likelihood
        return loss_fn(outputs, targets) - 100.0

    result = find_lr(
        model, opt, shifted, batches, start_lr=1e-6, end_lr=1e-3, num_steps=40, log=False
    )
    assert len(result.lrs) == 40 and not result.stopped_early


def test_global_random_state_is_restored():
    # Dropout draws from torch's global generator: after the test it draws what it would have.
    model, opt, loss_fn, batches = task_setup(momentum=0.9)
    dropout_model = torch.nn.Sequential(torch.nn.Dropout(0.5), model)
    torch.manual_seed(123)
    expected = torch.rand(5)
    torch.manual_seed(123)
    find_lr(dropout_model, opt, loss_fn, batches, num_steps=20, log=False)
    assert torch.equal(torch.rand(5), expected)

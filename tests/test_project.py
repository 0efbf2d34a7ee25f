"""Facts about the project that CI and a newcomer depend on."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

import lrwatch
from lrwatch import keys
from lrwatch.run import Run, Series

ROOT = Path(__file__).resolve().parents[1]


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)\n```", readme, flags=re.S)
    test_command = next(b for b in blocks if "scripts/check" in b)
    ci_lines = (ROOT / ".ci" / "run").read_text().splitlines()
    assert test_command.strip() in [line.strip() for line in ci_lines]


def test_import_lrwatch_stays_light():
    code = "import sys, lrwatch; print(','.join(m for m in ('torch','dash','mlflow') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_public_api_is_complete():
    for name in lrwatch.__all__:
        assert getattr(lrwatch, name) is not None, name


def test_metric_key_scheme():
    assert keys.lr_key() == "lr" == keys.LR
    assert keys.lr_key(group=2) == "lr/pg2"
    assert keys.lr_key(group=1, optimizer=1) == "lr/opt1/pg1"
    assert keys.LOSS == "train/loss"
    assert keys.find_loss_key(["val_loss", "train_loss", "lr"]) == "train_loss"
    assert keys.find_loss_key(["val/loss", "epoch"]) is None
    assert keys.find_lr_key(["lr-Adam/pg2", "lr-Adam/pg1", "loss"]) == "lr-Adam/pg1"
    assert keys.find_lr_key(["lr-SGD", "lr-SGD-momentum"]) == "lr-SGD"
    assert not keys.is_lr_key("lr-Adam-momentum")


@pytest.mark.parametrize(
    "names, loss, lr",
    [
        # DeepSpeed's monitor (fp16 adds the loss scale, which sorted before the loss and was
        # analysed as it; its LR was "not logged").
        (["Train/Samples/lr", "Train/Samples/loss_scale", "Train/Samples/train_loss"],
         "Train/Samples/train_loss", "Train/Samples/lr"),
        # Keras's TensorBoard callback.
        (["epoch_learning_rate", "epoch_loss"], "epoch_loss", "epoch_learning_rate"),
        # MosaicML Composer's LRMonitor and loss.
        (["lr-DecoupledAdamW/group1", "lr-DecoupledAdamW/group0", "loss/train/total"],
         "loss/train/total", "lr-DecoupledAdamW/group0"),
        (["optim/lr", "loss_ema", "total_loss"], "total_loss", "optim/lr"),
        (["loss-scale", "lm loss", "learning-rate"], "lm loss", "learning-rate"),  # Megatron
        (["loss_scaler", "loss_unscaled"], "loss_unscaled", None),
        # SummaryWriter scripts (PyTorch's tutorials): a space or CamelCase in the LR's name.
        (["Loss/train", "Learning Rate"], "Loss/train", "Learning Rate"),
        (["Loss/train", "Train/LearningRate"], "Loss/train", "Train/LearningRate"),
    ],
)  # fmt: skip
def test_other_trainers_metric_names_are_found(names, loss, lr):
    assert (keys.find_loss_key(names), keys.find_lr_key(names)) == (loss, lr)


def test_lightning_param_groups_numbered_or_named_are_lrs_of_one_optimizer():
    """LearningRateMonitor writes ``lr-SGD/pg1``, ``lr-SGD/pg2`` (from 1) for several groups, or
    ``lr-SGD/<name>`` for groups given a name; the named ones were "no LR logged"."""
    numbered = ["lr-SGD/pg10", "lr-SGD/pg2", "lr-SGD/pg1", "lr-SGD-momentum/pg1", "lr-Adam"]
    assert keys.find_lr_key(numbered[:3]) == "lr-SGD/pg1"
    assert keys.sibling_group_keys("lr-SGD/pg1", numbered) == ["lr-SGD/pg10", "lr-SGD/pg2"]
    named = ["lr-SGD/head", "lr-SGD/backbone", "train_loss"]
    assert keys.find_lr_key(named) == "lr-SGD/backbone" and keys.is_lr_key("lr-SGD/head")
    assert keys.sibling_group_keys("lr-SGD/backbone", named) == ["lr-SGD/head"]
    ours = ["lr", "lr/pg1", "lr/opt1", "lr/opt1/pg1"]
    assert keys.sibling_group_keys("lr", ours) == ["lr/pg1"]
    assert keys.sibling_group_keys("lr/opt1", ours) == ["lr/opt1/pg1"]
    composer = ["lr-AdamW/group0", "lr-AdamW/group1"]
    assert keys.sibling_group_keys("lr-AdamW/group0", composer) == ["lr-AdamW/group1"]


def test_series_cleaning_sorts_collapses_and_restores_infinity():
    raw = Series([3, 1, 2, 2, 5], [0.3, 0.1, 0.2, 0.25, 1.7976931348623157e308])
    clean = raw.cleaned()
    assert clean.steps.tolist() == [1, 2, 3, 5]
    assert clean.values[:3].tolist() == [0.1, 0.25, 0.3]  # the last value logged for step 2
    assert clean.values[3] == float("inf")


def test_run_finds_loss_and_lr_among_common_names():
    run = Run(id="r", metrics={"learning_rate": Series([0], [0.1]), "loss": Series([0], [1.0])})
    assert (run.loss_key, run.lr_key) == ("loss", "learning_rate")


def _install_lines_lrwatch_can_print() -> list[str]:
    """The second argument of every ``require(module, install)`` call in the packages."""
    import ast

    found = []
    for path in [
        *ROOT.joinpath("lrwatch").rglob("*.py"),
        *ROOT.joinpath("dashboard").rglob("*.py"),
    ]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "require":
                found.append(ast.literal_eval(node.args[1]))
    return found


def test_every_install_line_names_an_extra_that_exists():
    # `pip install 'lrwatch[parquet]'` (an extra that never existed) only warns and installs
    # nothing new, so a missing-dependency message naming it would leave the user stuck.
    import tomllib

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    lines = _install_lines_lrwatch_can_print()
    assert len(lines) >= 5
    for line in lines:
        extra = re.fullmatch(r"lrwatch\[(\w+)\]", line)
        assert extra is None or extra.group(1) in extras, line
        assert extra or re.fullmatch(r"[a-z][a-z0-9_-]*", line), line


def test_a_missing_dependency_is_one_line_with_its_install_command():
    from lrwatch.errors import MissingDependency, require

    with pytest.raises(MissingDependency) as caught:
        require("no_such_module_lrwatch.sub", "no-such-package")
    assert str(caught.value) == (
        "no_such_module_lrwatch is needed for this; install it with: pip install 'no-such-package'"
    )

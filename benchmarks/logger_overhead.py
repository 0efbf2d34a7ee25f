"""Training-thread cost of logging one step: lrwatch vs nothing, per-step MLflow, TensorBoard.

Everything runs side by side in ONE process and one run of this script, on two loops:

* ``bare``: no model, the loss is a ready CPU tensor - the logger's cost alone;
* ``train``: a small real training loop (lrwatch.tasks ``mlp_regression``, batch 32, CPU).

For each logger the whole loop is timed (median of ``--repeats``), so the background writer's
share of the GIL counts against lrwatch too. "added/step" is (loop time - the no-logging loop
time) / steps. Per-step ``mlflow.log_metric`` runs fewer steps (it costs milliseconds a call).
lrwatch's ``close()`` (final flush at the end of training) is reported separately.

    python benchmarks/logger_overhead.py            # CPU table
    python benchmarks/logger_overhead.py --cuda     # CUDA loops: lrwatch vs none vs per-step .item()
    python benchmarks/logger_overhead.py --writer   # the background writer's CPU per step, per store
    python benchmarks/logger_overhead.py --first-flush --repeats 5   # ... for a run's first flush
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

import lrwatch  # noqa: E402
from lrwatch import keys  # noqa: E402
from lrwatch.tasks import TrainConfig, make_optimizer, make_task  # noqa: E402

# The "wide" CUDA loop: a 3-layer MLP of width 2048 on batches of 4096 (~100 GFLOP a step, about
# a millisecond of an H100), so the GPU's share of a step is of the order of the CPU's share of
# launching it - where a per-step host-device sync costs most (the CPU can no longer run ahead).
WIDE_WIDTH, WIDE_BATCH = 2048, 4096


class Loop:
    """A loop body producing (loss, optimizer) per step: bare, real training, or wide (CUDA)."""

    def __init__(self, kind: str, device: str = "cpu") -> None:
        torch.manual_seed(0)
        self.kind, self.device = kind, device
        task = make_task("mlp_regression")
        self.task = task
        self.model = task.make_model().to(device)
        if kind == "wide":
            inputs = task.batches(torch.Generator().manual_seed(0)).__next__()[0].shape[1]
            layers = [torch.nn.Linear(inputs, WIDE_WIDTH), torch.nn.ReLU()]
            layers += [torch.nn.Linear(WIDE_WIDTH, WIDE_WIDTH), torch.nn.ReLU()]
            self.model = torch.nn.Sequential(*layers, torch.nn.Linear(WIDE_WIDTH, 1)).to(device)
        self.optimizer = make_optimizer(self.model.parameters(), TrainConfig(lr=0.01, momentum=0.9))
        self.batches = task.batches(torch.Generator().manual_seed(0))
        self.fixed = [next(self.batches) for _ in range(64)]
        self.fixed = [(x.to(device), y.to(device)) for x, y in self.fixed]
        if kind == "wide":
            width = self.fixed[0][0].shape[1]
            self.fixed = [
                (
                    torch.randn(WIDE_BATCH, width, device=device),
                    torch.randn(WIDE_BATCH, 1, device=device),
                )
                for _ in range(8)
            ]
        self.bare_loss = torch.tensor(0.5, device=device)

    def step(self, i: int):
        if self.kind == "bare":
            return self.bare_loss
        if self.kind == "python":
            # ~0.6 ms of Python between 20 tiny torch ops, each of which releases the GIL: the
            # worst case for a background thread, which must win the GIL from this one.
            tiny = self.bare_loss
            for _ in range(20):
                _python_work()
                tiny = tiny + 1
            return self.bare_loss
        inputs, targets = self.fixed[i % len(self.fixed)]
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.task.loss_fn(self.model(inputs), targets)
        loss.backward()
        self.optimizer.step()
        return loss


def _python_work(n: int = 1000) -> int:
    total = 0
    for k in range(n):
        total += k
    return total


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def time_loop(loop: Loop, steps: int, log_step, device: str = "cpu") -> tuple[float, float]:
    """(wall seconds, CPU seconds of this - the training - thread) for the whole loop."""
    _sync(device)
    start, start_cpu = time.perf_counter(), time.thread_time()
    for i in range(steps):
        loss = loop.step(i)
        log_step(i, loss)
    _sync(device)
    return time.perf_counter() - start, time.thread_time() - start_cpu


def run_none(loop, steps, store, device="cpu"):
    return *time_loop(loop, steps, lambda i, loss: None, device), 0.0


def run_lrwatch(loop, steps, store, device="cpu", analyze=True):
    w = lrwatch.watch(loop.optimizer, tracking_uri=store, experiment="bench", analyze=analyze)
    wall, cpu = time_loop(loop, steps, lambda i, loss: w.step(loss), device)
    start = time.perf_counter()
    assert w.close(timeout_s=300)
    return wall, cpu, time.perf_counter() - start


def writer_cpu(steps, store) -> float:
    """CPU seconds per step that lrwatch spends off the training thread: the background writer
    (spool, live analysis, sending) while a loop of ~0.5 ms steps runs, plus ``close()``'s final
    flush.

    Off the training thread is the process's CPU time minus the training thread's during the
    loop, so it needs no hook into the writer. On a GPU loop the Python part of it is GIL time
    the training thread waits for; a SQL driver's own work (inside SQLite) releases the GIL.
    """
    loop = Loop("bare")
    w = lrwatch.watch(loop.optimizer, tracking_uri=store, experiment="bench")
    # Not counted: creating the run, which `watch` does before it returns. Counted: the first
    # flush (a flush interval after `watch`, inside the loop), with the run's params and first
    # metric names (see first_flush_cpu).
    for i in range(10):
        w.step(loop.step(i))
    while w.run_id is None:
        time.sleep(0.05)
    time.sleep(0.5)  # the first flush then comes ~0.5 s into the timed loop, as it always did
    start_process, start_thread = time.process_time(), time.thread_time()
    for i in range(10, steps + 10):
        w.step(loop.step(i))
        if i % 10 == 9:
            time.sleep(0.005)  # a GPU's share of the steps, while the training thread waits
    loop_thread = time.thread_time() - start_thread
    assert w.close(timeout_s=300)
    return (time.process_time() - start_process - loop_thread) / steps


def first_flush_cpu(store: str) -> tuple[float, int]:
    """CPU seconds the writer thread spends on its first flush, and the steps it found queued.

    The run is created when ``watch`` starts; the first flush comes a flush interval later and
    sends the first ~2,000 steps of the loop (``writer_cpu``'s: a 5 ms pause every 10 steps). It
    also carries the run's one-off work: its params, the first metric names, which MLflow's
    ``log_batch`` validates before the direct SQL path takes them.
    """
    from lrwatch.tracking.writer import Writer

    flushes: list[tuple[float, int]] = []
    cycle = Writer._cycle

    def timed_cycle(self, **kwargs):
        queued, start = len(self.queue), time.thread_time()
        try:
            return cycle(self, **kwargs)
        finally:
            flushes.append((time.thread_time() - start, queued))

    Writer._cycle = timed_cycle
    try:
        loop = Loop("bare")
        w = lrwatch.watch(loop.optimizer, tracking_uri=store, experiment="bench")
        i = 0
        while not flushes:
            w.step(loop.step(i))
            i += 1
            if i % 10 == 0:
                time.sleep(0.005)
        assert w.close(timeout_s=300)
    finally:
        Writer._cycle = cycle
    return flushes[0]


def first_flush_table(args) -> None:
    """The writer thread's CPU for each run's first flush into a fresh SQLite store."""
    root = Path(tempfile.mkdtemp(prefix="lrwatch-bench-first-"))
    results = [first_flush_cpu(f"sqlite:///{root}/{i}.db") for i in range(args.repeats)]
    times = sorted(cpu * 1e3 for cpu, _ in results)
    queued = sorted(steps for _, steps in results)
    print(f"first flush, SQLite, {args.repeats} runs: writer cpu {statistics.median(times):.1f} ms "
          f"(median; {times[0]:.1f} to {times[-1]:.1f}), {queued[0]}-{queued[-1]} steps queued")  # fmt: skip


def writer_table(args) -> None:
    """Per kind of store: the writer's CPU per step (bare loop), and what lrwatch adds to the wall
    time of two loops whose torch ops release the GIL, as a GPU loop's kernel launches do: the
    small CPU training loop, and a Python-bound one (see ``Loop.step``). The writer's Python runs
    in between and must win the GIL back each time. Medians of interleaved repeats; wall time as
    paired ratios, each lrwatch run against a run without logging just before it."""
    import mlflow

    root = Path(tempfile.mkdtemp(prefix="lrwatch-bench-writer-"))
    sqlite = f"sqlite:///{root}/mlflow.db"
    mlflow.MlflowClient(sqlite).search_experiments()  # migrate before timing anything
    server = _start_mlflow_server(root)
    stores = [
        ("SQLite, direct SQL", sqlite, "1"),
        ("SQLite, MLflow's log_batch", sqlite, "0"),
        ("mlflow server (HTTP)", server[0], "1"),
    ]
    cpu: dict[str, list[float]] = {name: [] for name, _, _ in stores}
    added: dict[tuple[str, str], list[float]] = {}
    try:
        for _ in range(args.repeats):
            for name, uri, direct in stores:
                os.environ["LRWATCH_DIRECT_SQL"] = direct
                cpu[name].append(writer_cpu(args.writer_steps, uri))
                for kind, steps in (("train", args.train_steps), ("python", args.train_steps)):
                    none = run_none(Loop(kind), steps, uri)[0]
                    watched = run_lrwatch(Loop(kind), steps, uri)[0]
                    added.setdefault((name, kind), []).append(watched / none - 1)
    finally:
        _stop(server[1])
        os.environ.pop("LRWATCH_DIRECT_SQL", None)
    print(f"torch {torch.__version__}, MLflow {mlflow.__version__}, {os.cpu_count()} CPUs; "
          f"loss + LR each step; medians (range) of {args.repeats}")  # fmt: skip
    print(f"{'store':28} {'writer cpu us/step':>20}   {'wall added: training loop':>30}"
          f"   {'Python-bound loop':>22}")  # fmt: skip

    def spread(values: list[float], scale: float, fmt: str) -> str:
        low, mid, high = min(values) * scale, statistics.median(values) * scale, max(values) * scale
        return f"{mid:{fmt}} ({low:{fmt}} to {high:{fmt}})"

    for name, _, _ in stores:
        print(f"{name:28} {spread(cpu[name], 1e6, '.1f'):>20}   "
              f"{spread(added[(name, 'train')], 100, '+.1f'):>30}   "
              f"{spread(added[(name, 'python')], 100, '+.1f'):>22}")  # fmt: skip


def _start_mlflow_server(root: Path):
    """A local ``mlflow server`` on a free port over its own SQLite store: (uri, process). It
    shares this machine's cores with the loops, so its own work counts in their wall time."""
    import socket
    import subprocess
    import urllib.request

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [
        sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
        "--workers", "1", "--backend-store-uri", f"sqlite:///{root}/server.db",
        "--default-artifact-root", str(root / "artifacts"),
    ]  # fmt: skip
    env = dict(os.environ, MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false")  # no job runners
    process = subprocess.Popen(
        command,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group: stopped with its uvicorn worker
    )
    uri = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            with urllib.request.urlopen(f"{uri}/health", timeout=1):
                return uri, process
        except OSError:
            time.sleep(0.2)
    _stop(process)
    raise SystemExit("mlflow server did not start")


def _stop(process) -> None:
    import signal

    os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def run_item(loop, steps, store, device="cpu"):
    values = []
    return *time_loop(loop, steps, lambda i, loss: values.append(loss.item()), device), 0.0


def run_mlflow(loop, steps, store, device="cpu"):
    import mlflow

    mlflow.set_tracking_uri(store)
    mlflow.set_experiment("bench-mlflow")
    with mlflow.start_run():
        opt = loop.optimizer

        def log(i, loss):
            mlflow.log_metric(keys.LOSS, loss.item(), step=i)
            mlflow.log_metric(keys.LR, opt.param_groups[0]["lr"], step=i)

        return *time_loop(loop, steps, log, device), 0.0


def run_tensorboard(loop, steps, store, device="cpu"):
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(log_dir=tempfile.mkdtemp(prefix="lrwatch-bench-tb-"))
    opt = loop.optimizer

    def log(i, loss):
        writer.add_scalar(keys.LOSS, loss, i)
        writer.add_scalar(keys.LR, opt.param_groups[0]["lr"], i)

    wall, cpu = time_loop(loop, steps, log, device)
    start = time.perf_counter()
    writer.close()
    return wall, cpu, time.perf_counter() - start


def measure(kind, runners, repeats, store, device="cpu"):
    """{name: (wall s/step, training-thread CPU s/step, close s)}, medians over ``repeats``.

    Repeats interleave the loggers, so a load change on a shared machine hits all of them alike.
    """
    samples = {name: [] for name, _, _ in runners}
    for _ in range(repeats):
        for name, runner, steps in runners:
            wall, cpu, close = runner(Loop(kind, device), steps, store, device)
            samples[name].append((wall / steps, cpu / steps, close))
    return {
        name: tuple(statistics.median(s[i] for s in runs) for i in range(3))
        for name, runs in samples.items()
    }


def cpu_table(args) -> None:
    store = f"sqlite:///{tempfile.mkdtemp(prefix='lrwatch-bench-')}/mlflow.db"
    import mlflow

    mlflow.MlflowClient(store).search_experiments()  # migrate the store before timing anything
    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs, store {store}")
    print("us/step = microseconds per step (median); 'cpu' = CPU time of the training thread,")
    print(
        "'added' = minus the no-logging loop; 'x lrwatch' = added cpu / lrwatch's in the bare loop"
    )
    print(f"{'loop':6} {'logger':22} {'steps':>7} {'wall':>10} {'cpu':>10} {'added wall':>11} "
          f"{'added cpu':>10} {'x lrwatch':>10} {'close s':>8}")  # fmt: skip
    # Ratios divide by lrwatch's added CPU in the bare loop: in the training loop its cost is
    # below the run-to-run noise, so a ratio against it there would be meaningless.
    lrwatch_added = None
    for kind in ("bare", "train"):
        steps = args.steps if kind == "bare" else args.train_steps
        runners = [
            ("none", run_none, steps),
            ("lrwatch", run_lrwatch, steps),
            ("tensorboard add_scalar", run_tensorboard, steps),
            ("mlflow.log_metric", run_mlflow, args.mlflow_steps),
        ]
        results = measure(kind, runners, args.repeats, store)
        base_wall, base_cpu, _ = results["none"]
        if lrwatch_added is None:
            lrwatch_added = max(results["lrwatch"][1] - base_cpu, 1e-9)
        for name, _, n in runners:
            wall, cpu, close = results[name]
            ratio = "" if name in ("none", "lrwatch") else f"{(cpu - base_cpu) / lrwatch_added:.0f}"
            print(f"{kind:6} {name:22} {n:7d} {wall * 1e6:10.2f} {cpu * 1e6:10.2f} "
                  f"{(wall - base_wall) * 1e6:11.2f} {(cpu - base_cpu) * 1e6:10.2f} "
                  f"{ratio:>10} {close:8.2f}")  # fmt: skip


def cuda_table(args) -> None:
    if not torch.cuda.is_available():
        print("--cuda: no CUDA device here; run this on a machine with a GPU")
        return
    store = f"sqlite:///{tempfile.mkdtemp(prefix='lrwatch-bench-')}/mlflow.db"
    import mlflow

    mlflow.MlflowClient(store).search_experiments()  # migrate the store before timing anything
    print(f"torch {torch.__version__}, {torch.cuda.get_device_name()}, store {store}")
    print("us/step: wall and training-thread CPU, medians; a host-device sync shows as wall time")
    print(f"{'loop':6} {'logger':24} {'steps':>7} {'wall':>9} {'vs none':>9} {'cpu':>9}")
    for kind in ("bare", "train", "wide"):
        steps = args.steps if kind == "bare" else args.train_steps
        runners = [
            ("none", run_none, steps),
            ("lrwatch", run_lrwatch, steps),
            ("lrwatch, analyze=False", functools.partial(run_lrwatch, analyze=False), steps),
            ("naive per-step .item()", run_item, steps),
        ]
        results = measure(kind, runners, args.repeats, store, "cuda")
        for name, _, _ in runners:
            wall, cpu, _ = results[name]
            print(f"{kind:6} {name:24} {steps:7d} {wall * 1e6:9.2f} "
                  f"{(wall / results['none'][0] - 1) * 100:8.1f}% {cpu * 1e6:9.2f}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20_000, help="bare-loop steps")
    parser.add_argument("--train-steps", type=int, default=2_000, help="training-loop steps")
    parser.add_argument("--mlflow-steps", type=int, default=50, help="steps for log_metric")
    parser.add_argument("--writer-steps", type=int, default=10_000, help="steps for --writer")
    parser.add_argument("--repeats", type=int, default=3)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--cuda", action="store_true", help="CUDA training loop instead")
    mode.add_argument(
        "--writer", action="store_true", help="the background writer's CPU per step, per store"
    )
    mode.add_argument(
        "--first-flush", action="store_true", help="the writer's CPU for a run's first flush"
    )
    args = parser.parse_args()
    torch.set_num_threads(1)  # steady timings: no intra-op thread pool fighting the writer
    os.environ.setdefault("LRWATCH_SPOOL_DIR", tempfile.mkdtemp(prefix="lrwatch-bench-spool-"))
    if args.writer:
        writer_table(args)
    elif args.first_flush:
        first_flush_table(args)
    else:
        cuda_table(args) if args.cuda else cpu_table(args)


if __name__ == "__main__":
    main()

"""Trials per GPU: the same short study run with `--trials-per-gpu` 1, 2 and 4, side by side.

An epoch of the users' 73 images takes well under a second on an H100, so a trial's fixed costs
(process start, model build, XLA compilation and autotuning, validation) may leave the GPU idle.
Packing several trials onto one GPU overlaps one trial's fixed costs with another's training. Each
setting runs `optimize run --gpus 0 --trials-per-gpu N` on a fresh SQLite study and a fresh
compile cache for `--timeout` seconds (workers then finish the trial in hand), and reports trials
and epochs finished, training images per second over the whole wall time, the median trial's
compile time and steady epoch, and the GPU's utilisation and memory sampled by `nvidia-smi`.

    KERAS_BACKEND=jax python bench/packing.py                  # one GPU: bench/h100_short.toml, 1,2,4
    python bench/packing.py --smoke                            # CPU, tiny study, seconds
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import optuna
from _common import (
    BENCH_DIR,
    add_output_args,
    describe_machine,
    first_epoch_extra,
    gpu_names,
    later_epoch,
    markdown_table,
    publish,
)
from optuna.trial import TrialState

from optimize.results.record import read_record, stored_history
from optimize.search.config import load_config

SMOKE_CONFIG = """
description = "packing smoke test"
[data.synthetic]
n_images = 8
size = 32
seed = 0
[training]
base_filters = 4
depth = 2
max_epochs = 2
patience = 2
run_eagerly = true
[search]
batch_size = [2, 4]
[sampler]
kind = "random"
seed = 0
[pruner]
kind = "none"
[budget]
max_trials = 2
"""


class GpuSampler:
    """Samples `nvidia-smi` utilisation (%) and memory used (MiB) once a second while running."""

    def __init__(self) -> None:
        self.utilisation: list[float] = []
        self.memory_mib: list[float] = []
        self._process: subprocess.Popen | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> GpuSampler:
        if gpu_names():
            self._process = subprocess.Popen(
                [
                    "nvidia-smi",
                    "--query-gpu=utilization.gpu,memory.used",
                    "--format=csv,noheader,nounits",
                    "-lms",
                    "1000",
                ],
                stdout=subprocess.PIPE,
                text=True,
            )
            self._thread = threading.Thread(target=self._read, daemon=True)
            self._thread.start()
        return self

    def _read(self) -> None:
        for line in self._process.stdout:
            parts = [part.strip() for part in line.split(",")]
            if len(parts) >= 2 and all(part.replace(".", "").isdigit() for part in parts[:2]):
                self.utilisation.append(float(parts[0]))
                self.memory_mib.append(float(parts[1]))

    def __exit__(self, *exc: object) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait(timeout=10)


@dataclass
class PackingRun:
    """One `--trials-per-gpu` setting: what finished in how long."""

    trials_per_gpu: int
    wall_seconds: float
    exit_code: int
    n_train: int
    trials: list[optuna.trial.FrozenTrial]
    utilisation: list[float] = field(default_factory=list)
    memory_mib: list[float] = field(default_factory=list)

    @property
    def finished(self) -> list[optuna.trial.FrozenTrial]:
        return [t for t in self.trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]

    @property
    def trained(self) -> list[optuna.trial.FrozenTrial]:
        """Finished trials that stored their per-epoch history."""
        return [t for t in self.finished if stored_history(t)]

    @property
    def epoch_seconds(self) -> list[list[float]]:
        return [stored_history(t)["seconds"] for t in self.trained]

    @property
    def epochs(self) -> int:
        return sum(len(seconds) for seconds in self.epoch_seconds)

    @property
    def images_trained(self) -> int:
        """Epochs × the images each epoch trained on (full batches only, unless the remainder is kept)."""
        return sum(
            len(stored_history(t)["seconds"]) * (read_record(t).images_per_epoch or self.n_train) for t in self.trained
        )

    @property
    def images_per_second(self) -> float:
        return self.images_trained / self.wall_seconds

    def median_first_epoch_extra(self) -> float:
        """Median over trials of first epoch − median later epoch: compilation and autotuning."""
        extras = [first_epoch_extra(s) for s in self.epoch_seconds if len(s) > 1]
        return statistics.median(extras) if extras else float("nan")

    def median_steady_epoch(self) -> float:
        later = [later_epoch(s) for s in self.epoch_seconds if len(s) > 1]
        return statistics.median(later) if later else float("nan")

    def median_trial_seconds(self) -> float:
        durations = [t.duration.total_seconds() for t in self.finished if t.duration]
        return statistics.median(durations) if durations else float("nan")


def optimize_run(config: Path, url: str, cache: Path, extra: list[str]) -> list[str]:
    jax = os.environ.get("KERAS_BACKEND") == "jax"  # TensorFlow keeps no compile cache
    cache_args = ["--compile-cache", str(cache)] if jax else []
    command = [sys.executable, "-P", "-m", "optimize", "run", "--study", str(config), "--storage", url]
    return command + cache_args + extra


def warm_up(config: Path, folder: Path) -> float:
    """One trial on a throw-away study, filling the shared compile cache; returns its wall time."""
    started = time.perf_counter()
    command = optimize_run(config, f"sqlite:///{folder / 'warm-up.db'}", folder / "cache", ["--n-trials", "1"])
    print("--- warm-up: one trial fills the shared compile cache", file=sys.stderr, flush=True)
    subprocess.run(command, stdout=sys.stderr, stderr=subprocess.STDOUT, check=True)
    return time.perf_counter() - started


def run_setting(
    config: Path, trials_per_gpu: int, timeout: float | None, folder: Path, shared_cache: bool
) -> PackingRun:
    """`optimize run --gpus 0 --trials-per-gpu N` on a fresh study; the trials it left."""
    name = load_config(str(config)).name
    url = f"sqlite:///{folder / f'tpg{trials_per_gpu}.db'}"
    cache = folder / ("cache" if shared_cache else f"cache-tpg{trials_per_gpu}")
    # Without a GPU (the smoke run on a CPU) `--gpus 0` is refused: N workers share the CPU instead.
    extra = (
        ["--gpus", "0", "--trials-per-gpu", str(trials_per_gpu)] if gpu_names() else ["--workers", str(trials_per_gpu)]
    )
    command = optimize_run(config, url, cache, extra + (["--timeout", str(timeout)] if timeout else []))
    print(f"--- trials per GPU {trials_per_gpu}: {' '.join(command[3:])}", file=sys.stderr, flush=True)
    with GpuSampler() as sampler:
        started = time.perf_counter()
        code = subprocess.run(command, stdout=sys.stderr, stderr=subprocess.STDOUT).returncode
        wall = time.perf_counter() - started
    study = optuna.load_study(study_name=name, storage=url)
    n_train = int(study.user_attrs["data_stats"]["n_train"])
    run = PackingRun(trials_per_gpu, wall, code, n_train, study.get_trials(), sampler.utilisation, sampler.memory_mib)
    print(f"--- trials per GPU {trials_per_gpu}: {table_rows([run])[0]}", file=sys.stderr, flush=True)
    return run


def table_rows(runs: list[PackingRun]) -> list[list[str]]:
    base = runs[0].images_per_second if runs and runs[0].images_per_second else float("nan")
    rows = []
    for run in runs:
        failed = sum(t.state == TrialState.FAIL for t in run.trials)
        utilisation = f"{statistics.mean(run.utilisation):.0f}" if run.utilisation else "—"
        memory = f"{max(run.memory_mib) / 1024:.1f}" if run.memory_mib else "—"
        rows.append(
            [
                str(run.trials_per_gpu),
                f"{run.wall_seconds:.0f}",
                f"{len(run.finished)}" + (f" (+{failed} failed)" if failed else ""),
                str(run.epochs),
                f"{run.images_per_second:.1f}",
                f"{run.images_per_second / base:.2f}×",
                f"{run.median_trial_seconds():.1f}",
                f"{run.median_first_epoch_extra():.1f}",
                f"{run.median_steady_epoch():.2f}",
                utilisation,
                memory,
                str(run.exit_code),
            ]
        )
    return rows


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=BENCH_DIR / "h100_short.toml", help="study config to run")
    parser.add_argument("--trials-per-gpu", default="1,2,4", help="settings to compare (default 1,2,4)")
    parser.add_argument("--timeout", type=float, default=100.0, help="seconds each setting starts trials for")
    parser.add_argument(
        "--warm-up",
        action="store_true",
        help="fill one compile cache with a trial first and share it (steady state); default: a cold cache each",
    )
    add_output_args(parser)
    args = parser.parse_args(argv)
    if args.smoke:
        args.trials_per_gpu, args.timeout = "1,2", None
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    machine = describe_machine()
    with tempfile.TemporaryDirectory(prefix="packing-") as tmp:
        folder = Path(tmp)
        config = args.config
        if args.smoke:
            config = folder / "packing_smoke.toml"
            config.write_text(SMOKE_CONFIG)
        warm_up_seconds = warm_up(config, folder) if args.warm_up else None
        runs = [
            run_setting(config, int(n), args.timeout, folder, shared_cache=args.warm_up)
            for n in args.trials_per_gpu.split(",")
        ]
    device = "; ".join(gpu_names()) or "no GPU (workers share the CPU)"
    backend = os.environ.get("KERAS_BACKEND", "tensorflow")
    body = "\n\n".join(
        [
            f"Study `{args.config.name if not args.smoke else 'smoke'}` on {device}, backend {backend}; each "
            + (f"setting starts trials for {args.timeout:g} s" if args.timeout else "setting runs the whole budget")
            + " on a fresh SQLite study, then its workers finish the trial in hand. "
            + (
                f"All settings share one compile cache, filled first by one warm-up trial ({warm_up_seconds:.0f} s): "
                "the steady state of a long study. "
                if warm_up_seconds is not None
                else "Each setting starts with an empty compile cache: a study's cold start. "
            )
            + f"Images/s = images trained (epochs × the full batches of the {runs[0].n_train} training images) "
            "÷ wall time, start of the workers to the last one's exit; "
            "ratios are to 1 trial per GPU in this run. Compile = first epoch − median later epoch of a trial.",
            markdown_table(
                [
                    "trials/GPU",
                    "wall (s)",
                    "trials",
                    "epochs",
                    "train img/s",
                    "÷ 1/GPU",
                    "median trial (s)",
                    "median compile (s)",
                    "median epoch (s)",
                    "GPU util %",
                    "peak GPU mem (GiB)",
                    "exit",
                ],
                table_rows(runs),
            ),
        ]
    )
    publish(args, f"Trials per GPU{' (smoke)' if args.smoke else ''}", body, machine)
    return 0 if all(run.exit_code == 0 for run in runs) else 1


if __name__ == "__main__":
    sys.exit(main())

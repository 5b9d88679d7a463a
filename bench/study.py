"""The main job end to end: a whole study run by the real `optimize` command, timed and taken apart.

As the users run it: a fresh study of `studies/microbead512.toml`'s search (4 architectures × 4 batch
sizes × 6 losses, learning rate, dropout; its sampler, pruner and known configurations) with
`optimize run --n-trials 30` on the node's GPUs (`--gpus all-visible`, the default one trial per GPU),
then `optimize export-best` and `optimize report`. Two passes of the same 30-trial study: one on an empty
compile cache (cold), then one as a new study (`--new-study`) on the cache the first filled (warm; the
cache is JAX's, so under TensorFlow both passes compile everything). Data: 86 synthetic 512² microbead
images with the users' statistics, split 0.15 into the users' 73 training and 13 validation images, or
`--data DIR` (the users' images/ and masks/).

Reported, read back from the studies (each trial stores its `time_split` and `program`, see
`optimize/results/record.py`): wall time per pass; trials complete / pruned / failed; best val Jaccard;
the trials' seconds in compiling, training steps, validation, bead metrics, database calls and host
work, summed over the study and as shares of the trials' time and of wall × workers; GPU busy % and
peak memory, sampled through `nvidia-smi` every second; the distinct compiled programs with their trials
and median compile seconds, cold against warm; `export-best` and `report` wall times.

    KERAS_BACKEND=jax python bench/study.py                    # one GPU node: its GPUs, 512², 2 × 30 trials
    KERAS_BACKEND=jax python bench/study.py --data DIR         # the same on the users' images
    KERAS_BACKEND=jax python bench/study.py --trials 8 --one-pass --warm-cache   # short: cold, then warm-cache
    bash bench/gpu_session.sh study                            # a lent GPU: the cold pass within one lease
    python bench/study.py --cpu                                # 64², base 8, depth 3, 10 epochs, 2 workers
    python bench/study.py --smoke                              # CI: 2 trials of a 32² tiny study, one pass
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
from collections import defaultdict
from pathlib import Path

import optuna
from _common import add_output_args, describe_machine, gpu_names, markdown_table, publish
from optuna.trial import TrialState

from optimize.results.record import SPLIT_COMPILE, TIME_SPLIT_PARTS, read_record
from optimize.workers.confirm import toml_text

ROOT = Path(__file__).resolve().parent.parent
USERS_STUDY = ROOT / "studies" / "microbead512.toml"
USERS_IMAGES = 86  # split 0.15: the users' 73 training and 13 validation images
STUDY = "wholestudy"
TRIALS = 30
SAMPLE_SECONDS = 1.0
OPTIMIZE = Path(sys.executable).parent / "optimize"
LEFT_OUT_ENV = ("OPTIMIZE_STORAGE", "OPTIMIZE_COMPILE_CACHE", "OPTIMIZE_ARTIFACTS", "OPTIMIZE_STUDIES_DIR")


@dataclasses.dataclass(frozen=True)
class Mode:
    """The study's scale and how `optimize run` spreads it over the machine."""

    name: str
    size: int
    n_images: int
    trials: int
    passes: tuple[str, ...]
    workers: tuple[str, ...]
    """`optimize run` options that choose the workers."""
    n_workers: int
    training: dict = dataclasses.field(default_factory=dict)
    """Keys of `[training]` that replace microbead512's."""
    timeout: int | None = None
    """Each pass's `optimize run --timeout`: no trial starts after it (a lent GPU's lease is short)."""


def modes(backend: str, n_gpus: int) -> dict[str, Mode]:
    jit = backend == "jax"  # without XLA, JAX runs op by op; TensorFlow's XLA on a CPU only compiles longer
    return {
        "gpu": Mode("gpu", 512, USERS_IMAGES, TRIALS, ("cold", "warm"), ("--gpus", "all-visible"), max(n_gpus, 1)),
        "cpu": Mode(
            "cpu",
            64,
            USERS_IMAGES,
            TRIALS,
            ("cold", "warm"),
            ("--workers", "2"),
            2,
            {"base_filters": 8, "depth": 3, "max_epochs": 10, "precision": "float32", "jit_compile": jit},
        ),
        "smoke": Mode(
            "smoke",
            32,
            16,
            2,
            ("cold",),
            ("--workers", "1"),
            1,
            {
                "base_filters": 4,
                "depth": 2,
                "max_epochs": 2,
                "precision": "float32",
                "jit_compile": False,
                "run_eagerly": True,
            },
        ),
    }


def study_table(users: dict, mode: Mode) -> dict:
    """microbead512's study at this mode's scale: synthetic data, the mode's training, the epochs-scaled pruner."""
    table = copy.deepcopy(users)
    table["description"] = f"bench/study.py ({mode.name}): studies/microbead512.toml's search at {mode.size}²"
    data = {key: value for key, value in table.get("data", {}).items() if key not in ("dir", "image_size")}
    data.update(synthetic={"n_images": mode.n_images, "size": mode.size, "seed": 0})
    table["data"] = data
    training = table.setdefault("training", {})
    users_epochs = training.get("max_epochs", 100)
    training.update(mode.training)
    scale = training.get("max_epochs", users_epochs) / users_epochs
    if "patience" in training:
        training["patience"] = max(1, round(training["patience"] * scale))
    pruner = table.setdefault("pruner", {})
    if "min_resource" in pruner:
        pruner["min_resource"] = max(1, round(pruner["min_resource"] * scale))
    table.setdefault("budget", {})["max_trials"] = mode.trials
    return table


def visible_gpus() -> list[str]:
    """The GPUs `optimize run --gpus all-visible` uses: `CUDA_VISIBLE_DEVICES`' entries when set, else all listed."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return [str(index) for index in range(len(gpu_names()))]
    return [entry.strip() for entry in visible.split(",") if entry.strip() and gpu_names()]


class GpuSampler:
    """`nvidia-smi` every second in a thread: utilization (busy %) and memory used of each visible GPU."""

    def __init__(self) -> None:
        self.busy: list[float] = []
        self.memory_mib: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self.gpus = visible_gpus()
        self.available = bool(self.gpus)

    def __enter__(self) -> GpuSampler:
        if self.available:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _sample(self) -> None:
        query = ["nvidia-smi", f"--id={','.join(self.gpus)}", "--query-gpu=utilization.gpu,memory.used"]
        query.append("--format=csv,noheader,nounits")
        while not self._stop.wait(SAMPLE_SECONDS):
            try:
                listing = subprocess.run(query, capture_output=True, text=True, check=True, timeout=10).stdout
            except (OSError, subprocess.SubprocessError):
                continue
            for line in listing.splitlines():
                busy, _, memory = line.partition(",")
                try:
                    self.busy.append(float(busy))
                    self.memory_mib.append(float(memory))
                except ValueError:
                    continue

    def describe(self) -> tuple[str, str]:
        """(mean busy %, peak memory) over the samples of every GPU; "no GPU" without one."""
        if not self.available:
            return "no GPU", "no GPU"
        if not self.busy:
            return "no sample", "no sample"
        return f"{statistics.fmean(self.busy):.0f} %", f"{max(self.memory_mib) / 1024:.1f} GiB"


@dataclasses.dataclass
class Pass:
    """One `optimize run` of the study and what its trials stored (queued ones it did not reach left out)."""

    label: str
    study: str
    wall: float
    n_workers: int
    trials: list
    gpu_busy: str
    gpu_memory: str

    def count(self, state: TrialState) -> int:
        return sum(trial.state == state for trial in self.trials)

    @property
    def best_val_jaccard(self) -> float | None:
        values = [read_record(trial).best_val_jaccard for trial in self.trials if trial.state == TrialState.COMPLETE]
        values = [value for value in values if value is not None]
        return max(values) if values else None

    @property
    def split_trials(self) -> list:
        return [trial for trial in self.trials if read_record(trial).time_split]

    def split_sums(self) -> dict[str, float]:
        """Seconds per part of `time_split`, summed over the trials (a part a trial did not time counts 0)."""
        sums = dict.fromkeys(TIME_SPLIT_PARTS, 0.0)
        for trial in self.split_trials:
            for part, seconds in read_record(trial).time_split.items():
                sums[part] = sums.get(part, 0.0) + (seconds or 0.0)
        return sums

    @property
    def trial_seconds(self) -> float:
        """Optuna's durations of the timed trials, summed."""
        return sum(trial.duration.total_seconds() for trial in self.split_trials if trial.duration)

    def compile_by_program(self) -> dict[str, list[float]]:
        programs: dict[str, list[float]] = defaultdict(list)
        for trial in self.split_trials:
            record = read_record(trial)
            programs[record.program or "?"].append(record.time_split.get(SPLIT_COMPILE) or 0.0)
        return programs


def optimize_command() -> list[str]:
    """The installed console script, as the users run it (else `python -m optimize`)."""
    return [str(OPTIMIZE)] if OPTIMIZE.exists() else [sys.executable, "-m", "optimize"]


def run_optimize(args: list[str], env: dict[str, str], log: Path) -> float:
    """Run `optimize ARGS` to the end with its output in `log`; its wall seconds. Exits on failure."""
    command = [*optimize_command(), *args]
    print(f"$ optimize {' '.join(args)}", flush=True)
    started = time.perf_counter()
    with log.open("w") as output:
        code = subprocess.run(command, stdout=output, stderr=subprocess.STDOUT, env=env, cwd=ROOT).returncode
    wall = time.perf_counter() - started
    if code != 0:
        raise SystemExit(f"optimize {' '.join(args)} exited {code}; its output ({log}):\n{log.read_text()[-4000:]}")
    print(f"  {wall:.1f} s", flush=True)
    return wall


def run_pass(
    label: str,
    study: str,
    mode: Mode,
    folder: Path,
    env: dict[str, str],
    data: Path | None,
    first: bool,
    cache: Path | None = None,
) -> Pass:
    """One `optimize run` of the whole study, with the shared compile cache or `cache`."""
    args = ["run", "--study", STUDY, "--n-trials", str(mode.trials), *mode.workers]
    if mode.timeout is not None:
        args += ["--timeout", str(mode.timeout)]
    if os.environ.get("KERAS_BACKEND", "tensorflow") == "jax":  # TensorFlow keeps no compile cache
        args += ["--compile-cache", str(cache or folder / "compile_cache")]
    if not first:
        args += ["--new-study", study]
    if data is not None:
        args += ["--data", str(data)]
    with GpuSampler() as gpu:
        wall = run_optimize(args, env, folder / f"{study}.log")
    loaded = optuna.load_study(study_name=study, storage=f"sqlite:///{folder / 'studies' / f'{study}.db'}")
    busy, memory = gpu.describe()
    ran = [trial for trial in loaded.get_trials(deepcopy=False) if trial.state != TrialState.WAITING]
    return Pass(label, study, wall, mode.n_workers, ran, busy, memory)


def seconds(value: float) -> str:
    return f"{int(value // 60)} min {value % 60:04.1f} s" if value >= 60 else f"{value:.1f} s"


def share(part: float, whole: float) -> str:
    return f"{100 * part / whole:.1f} %" if whole > 0 else "–"


def passes_table(passes: list[Pass]) -> str:
    rows = []
    for run in passes:
        best = run.best_val_jaccard
        rows.append(
            [
                run.label,
                seconds(run.wall),
                run.n_workers,
                len(run.trials),
                run.count(TrialState.COMPLETE),
                run.count(TrialState.PRUNED),
                run.count(TrialState.FAIL),
                "–" if best is None else f"{best:.4f}",
                run.gpu_busy,
                run.gpu_memory,
            ]
        )
    headers = ["pass", "wall", "workers", "trials", "complete", "pruned", "failed", "best val Jaccard"]
    return markdown_table([*headers, "GPU busy (mean)", "GPU memory (peak)"], rows)


def split_table(passes: list[Pass]) -> str:
    """Seconds per part, summed over the trials, and their shares of the trials' time and of wall × workers."""
    headers = ["where the time went"]
    columns = []
    for run in passes:
        headers += [f"{run.label}: s", "per trial", "of trials", "of wall × workers"]
        sums = run.split_sums()
        n = max(len(run.split_trials), 1)
        trials, capacity = run.trial_seconds, run.wall * run.n_workers
        parts = {**sums, "rest of the trials": trials - sum(sums.values()), "outside trials": capacity - trials}
        column = {}
        for part, value in parts.items():
            outside = part == "outside trials"
            column[part] = [
                f"{value:.{1 if value >= 10 else 2}f}",
                "" if outside else f"{value / n:.2f}",
                "" if outside else share(value, trials),
                share(value, capacity),
            ]
        column["wall × workers"] = [f"{capacity:.1f}", "", "", "100 %"]
        columns.append(column)
    rows = [[part, *(cell for column in columns for cell in column[part])] for part in columns[0]]
    return markdown_table(headers, rows)


def programs_table(passes: list[Pass]) -> str:
    by_pass = [run.compile_by_program() for run in passes]
    programs = sorted({program for compiles in by_pass for program in compiles})
    headers = ["compiled program"]
    for run in passes:
        headers += [f"{run.label}: trials", "compile (median s)"]
    rows = []
    for program in programs:
        row = [program]
        for compiles in by_pass:
            times = compiles.get(program, [])
            row += [len(times), f"{statistics.median(times):.2f}" if times else "–"]
        rows.append(row)
    return markdown_table(headers, rows)


NOTES = """\
Parts (each trial's `time_split`): compile = the first training and the first validation batch of each model
(tracing, XLA compiling and autotuning, and that batch); train_steps = the other training batches; validation
= the rest of each epoch's validation; bead_metrics = the bead-level metrics of a COMPLETE trial; database =
the worker's storage calls on the trial's thread; host = the rest of the trial (building the model, callbacks,
pruning, saving a best model). Rest of the trials = Optuna's trial durations − those parts (sampling, the
summary's writes, clearing the Keras session); outside trials = wall × workers − trial durations (start-up,
imports, loading the data, study set-up, waiting for the last worker)."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu", action="store_true", help="CPU scale: 64², base 8, depth 3, 10 epochs, 2 workers")
    parser.add_argument("--data", type=Path, help="folder with images/ and masks/ instead of the synthetic 512² set")
    parser.add_argument("--trials", type=int, help=f"trials per pass (default {TRIALS}; smoke 2)")
    parser.add_argument(
        "--one-pass",
        action="store_true",
        help="the cold pass only (under TensorFlow, which has no compile cache, the warm pass repeats it)",
    )
    parser.add_argument(
        "--warm-cache",
        action="store_true",
        help="JAX: one more pass, on a new cache filled first by `optimize warm-cache` (its wall in the pass's name)",
    )
    parser.add_argument(
        "--timeout", type=int, help="seconds after which a pass starts no new trial (optimize run --timeout)"
    )
    add_output_args(parser)
    args = parser.parse_args()
    backend = os.environ.get("KERAS_BACKEND", "tensorflow")
    if args.warm_cache and backend != "jax":
        raise SystemExit(f"--warm-cache fills JAX's compile cache; the {backend} backend has none: KERAS_BACKEND=jax")
    gpus = visible_gpus()
    mode = modes(backend, len(gpus))["smoke" if args.smoke else "cpu" if args.cpu else "gpu"]
    if args.trials is not None:
        mode = dataclasses.replace(mode, trials=args.trials)
    if args.one_pass:
        mode = dataclasses.replace(mode, passes=mode.passes[:1])
    if args.timeout is not None:
        mode = dataclasses.replace(mode, timeout=args.timeout)
    if mode.name == "gpu" and not gpus:
        raise SystemExit("no GPU visible to nvidia-smi: run on a GPU node, or use --cpu (or --smoke)")
    if args.data is not None and not (args.data / "images").is_dir():
        raise SystemExit(f"--data {args.data}: no images/ folder there (a folder with images/ and masks/)")
    machine = describe_machine()
    users = tomllib.loads(USERS_STUDY.read_text(encoding="utf-8"))
    with tempfile.TemporaryDirectory(prefix="bench-study-") as temporary:
        folder = Path(temporary)
        studies = folder / "studies"
        studies.mkdir()
        (studies / f"{STUDY}.toml").write_text(toml_text(study_table(users, mode)), encoding="utf-8")
        env = {key: value for key, value in os.environ.items() if key not in LEFT_OUT_ENV}
        env.update(OPTIMIZE_STUDIES_DIR=str(studies), TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1")
        data = args.data.resolve() if args.data else None
        passes = []
        for index, label in enumerate(mode.passes):
            study = STUDY if index == 0 else f"{STUDY}-{label}"
            passes.append(run_pass(label, study, mode, folder, env, data, first=index == 0))
        if args.warm_cache:
            warmed = folder / "warmed_cache"
            warm_args = ["warm-cache", "--study", STUDY, "--compile-cache", str(warmed)]
            warm_wall = run_optimize(warm_args + (["--data", str(data)] if data else []), env, folder / "warm.log")
            label = f"after warm-cache ({seconds(warm_wall)})"
            passes.append(run_pass(label, f"{STUDY}-warmed", mode, folder, env, data, first=False, cache=warmed))
        export = run_optimize(["export-best", "--study", STUDY], env, folder / "export.log")
        report = run_optimize(["report", "--study", STUDY], env, folder / "report.log")
        if not (studies / STUDY / "report").is_dir():
            raise SystemExit(f"optimize report wrote no folder {studies / STUDY / 'report'}")
    data_text = f"`{args.data}`" if args.data else f"{mode.n_images} synthetic {mode.size}² images"
    trained = ", ".join(
        f"{key} {str(value).lower() if isinstance(value, bool) else value}" for key, value in mode.training.items()
    )
    body = "\n\n".join(
        [
            f"Study: studies/microbead512.toml's search on {data_text} (val_fraction 0.15)"
            + (f", training {trained} (pruner and patience scaled to the epochs)" if trained else "")
            + f"; `optimize run --n-trials {mode.trials} {' '.join(mode.workers)}"
            + (f" --timeout {mode.timeout}" if mode.timeout is not None else "")
            + "`, passes: "
            + ", ".join(mode.passes)
            + f" compile cache ({backend}{'' if backend == 'jax' else ': no compile cache, every pass compiles'}).",
            passes_table(passes),
            split_table(passes),
            NOTES,
            programs_table(passes),
            markdown_table(
                ["command", "wall"], [["optimize export-best", seconds(export)], ["optimize report", seconds(report)]]
            ),
        ]
    )
    publish(args, f"Whole study, `optimize run` end to end ({mode.name})", body, machine)


if __name__ == "__main__":
    main()

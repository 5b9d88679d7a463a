"""A trial's fixed costs across trials and workers: with and without the compile cache.

Every trial builds a new model, so its training step is traced and compiled again (on a GPU, XLA
also autotunes each convolution). This runs real `optimize.training.train` trials, each scenario in a
new process as a new worker would be, in this order:

1. cache off: trial A, then trial B (other dropout) in the same process: a worker's first and later trial;
2. empty cache: trial A, which fills the cache;
3. cache holding A: trial B, whose program differs (dropout) but whose convolutions do (autotune hits);
4. cache holding A: trial A again, the same program (a full hit).

Reported per trial: model build, first epoch − median later epoch (tracing, compilation,
autotuning), time outside the epochs, and the whole `train()` wall time.

`--autotune-levels 4,1,0` measures XLA's autotuning trade-off instead (`[training] xla_autotune_level`):
trial A in a new worker with the cache off, once per level: the compile seconds each level saves
against the later epochs it may slow down.

    KERAS_BACKEND=jax python bench/compile_cost.py                 # one GPU: 512², base 64, batch 16
    KERAS_BACKEND=jax python bench/compile_cost.py --autotune-levels 4,1,0 --batch 32 --precision mixed_bfloat16
    KERAS_BACKEND=jax python bench/compile_cost.py --smoke         # CPU, the first two scenarios (TF: the first)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from _common import (  # noqa: E402
    add_output_args,
    describe_machine,
    first_epoch_extra,
    gpu_names,
    later_epoch,
    markdown_table,
    publish,
)

from optimize.search.settings import XLA_DEFAULT_LEVEL  # noqa: E402

SCENARIOS = (
    ("cache off, new worker", False, ("A", "B")),
    ("empty cache, new worker", True, ("A",)),
    ("cache holds A, new worker", True, ("B",)),
    ("cache holds A, new worker", True, ("A",)),
)
DROPOUT = {"A": 0.1, "B": 0.2}
USERS_IMAGES = 86


def child(args: argparse.Namespace) -> None:
    """Run the named trials in this process and print one JSON line per trial."""
    from data import make_microbeads, stratified_split
    from optimize.search.settings import TrainSettings
    from optimize.training.autotune import apply_autotune_level
    from optimize.training.compile_cache import enable_compile_cache
    from optimize.training.train import train

    apply_autotune_level(args.autotune_level)
    if args.cache_dir:
        enable_compile_cache(Path(args.cache_dir))
    images, masks = make_microbeads(args.images, args.size, seed=0)
    train_index, val_index = stratified_split(masks, val_fraction=0.15, seed=0)
    for name in args.trials.split(","):
        settings = TrainSettings(
            base_filters=args.base_filters,
            depth=args.depth,
            batch_size=args.batch,
            precision=args.precision,
            dropout=DROPOUT[name],
            max_epochs=args.epochs,
            patience=args.epochs,
            jit_compile=uses_xla(args),
        )
        started = time.perf_counter()
        result = train(settings, (images[train_index], masks[train_index]), (images[val_index], masks[val_index]))
        seconds = [row["seconds"] for row in result.history]
        print(
            "RESULT "
            + json.dumps(
                {
                    "trial": name,
                    "wall": time.perf_counter() - started,
                    "epochs": seconds,
                    "outside": result.train_seconds - sum(seconds),
                }
            ),
            flush=True,
        )


def uses_xla(args: argparse.Namespace) -> bool:
    """XLA on, as on the GPU nodes; a TensorFlow smoke run leaves it off (its XLA compile only slows CI)."""
    return not args.smoke or os.environ.get("KERAS_BACKEND") == "jax"


def smoke_scenarios() -> tuple[tuple[str, bool, tuple[str, ...]], ...]:
    """The first two scenarios under JAX; the first alone under TensorFlow, which keeps no compile cache (its
    second scenario would only repeat trial A in a new process)."""
    return SCENARIOS[:2] if os.environ.get("KERAS_BACKEND") == "jax" else SCENARIOS[:1]


def run_scenario(
    args: argparse.Namespace,
    label: str,
    cache_dir: Path | None,
    trials: tuple[str, ...],
    level: int = XLA_DEFAULT_LEVEL,
) -> list[dict]:
    command = [sys.executable, __file__, "--child", "--trials", ",".join(trials), f"--autotune-level={level}"]
    for key in ("size", "base_filters", "depth", "batch", "precision", "epochs", "images"):
        command.append(f"--{key.replace('_', '-')}={getattr(args, key)}")
    if args.smoke:
        command.append("--smoke")
    if cache_dir is not None:
        command += ["--cache-dir", str(cache_dir)]
    print(f"--- {label}: trials {', '.join(trials)}", file=sys.stderr, flush=True)
    started = time.perf_counter()
    output = subprocess.run(command, capture_output=True, text=True)
    process_seconds = time.perf_counter() - started
    if output.returncode != 0:
        raise SystemExit(f"scenario {label!r} failed:\n{output.stdout[-2000:]}\n{output.stderr[-3000:]}")
    results = [json.loads(line[len("RESULT ") :]) for line in output.stdout.splitlines() if line.startswith("RESULT ")]
    for result in results:
        result.update(scenario=label, process=process_seconds)
    return results


def table_rows(results: list[dict]) -> list[list[str]]:
    rows = []
    for result in results:
        epochs = result["epochs"]
        rows.append(
            [
                result["scenario"],
                result["trial"],
                f"{first_epoch_extra(epochs):.1f}",
                f"{later_epoch(epochs):.2f}",
                f"{result['outside']:.1f}",
                f"{result['wall']:.1f}",
                f"{result['process']:.1f}",
            ]
        )
    return rows


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--base-filters", type=int, default=64)
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--precision", default="float32")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per trial (default 3)")
    parser.add_argument("--images", type=int, default=USERS_IMAGES, help="images, split 85/15 (default 86)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--trials", default="A", help=argparse.SUPPRESS)
    parser.add_argument("--cache-dir", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--autotune-level", type=int, default=XLA_DEFAULT_LEVEL, help=argparse.SUPPRESS)
    parser.add_argument(
        "--autotune-levels",
        default=None,
        help="compare these XLA autotune levels (e.g. 4,1,0): trial A per level, new worker, cache off",
    )
    add_output_args(parser)
    args = parser.parse_args(argv)
    if args.smoke and not args.child:
        args.size, args.base_filters, args.depth, args.batch, args.epochs, args.images = 32, 4, 2, 2, 2, 10
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        child(args)
        return 0
    machine = describe_machine()
    results = []
    if args.autotune_levels:
        for level in (int(level) for level in args.autotune_levels.split(",")):
            results += run_scenario(args, f"autotune level {level}, cache off, new worker", None, ("A",), level)
    else:
        with tempfile.TemporaryDirectory(prefix="compile-cache-") as tmp:
            cache = Path(tmp) / "cache"
            for label, cached, trials in smoke_scenarios() if args.smoke else SCENARIOS:
                results += run_scenario(args, label, cache if cached else None, trials)
    backend = os.environ.get("KERAS_BACKEND", "tensorflow")
    device = "; ".join(gpu_names()) or "CPU"
    body = "\n\n".join(
        [
            f"Backend {backend} on {device}. Real `train()` trials of the U-Net, {args.size}², base_filters "
            f"{args.base_filters}, depth {args.depth}, batch {args.batch}, {args.precision}, "
            f"jit_compile {'on' if uses_xla(args) else 'off'}, "
            f"{args.epochs} epochs on {args.images} synthetic images (85/15 split); trials A and B differ only "
            "in dropout (0.1, 0.2). Each scenario is a new process; the cache is JAX's persistent compilation "
            "cache with XLA's autotune cache (`optimize/training/compile_cache.py`; the TensorFlow backend has none).",
            markdown_table(
                [
                    "scenario",
                    "trial",
                    "compile: first − later epoch (s)",
                    "later epoch (s)",
                    "outside epochs (s)",
                    "train() (s)",
                    "process (s)",
                ],
                table_rows(results),
            ),
        ]
    )
    topic = "XLA autotune levels" if args.autotune_levels else "Compile cost per trial"
    publish(args, f"{topic} ({backend}{', smoke' if args.smoke else ''})", body, machine)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Search efficiency: the users' full grid against random search and TPE + ASHA, at equal data and training.

Each method is an in-memory Optuna study running the project's real objective
(`optimize.workers.objective.Objective`, hence `optimize.training.train`) on one fixed data set, with as many
trials as the grid has configurations; repetition `seed` seeds the samplers and the training, so a
configuration trained by two methods gives the same curve. Reported per method (median over seeds):
best val Jaccard over every epoch of every trial, total epochs trained, wall time, and the
cumulative epochs (trials in order) until a val Jaccard first reached the grid's best of that seed.

    python bench/search_efficiency.py --quick --seeds 3     # 8 configurations, ~30 min on 2 CPU cores
    python bench/search_efficiency.py                       # the users' 96-configuration grid at 512² (GPU)

It is also the check that replaying searches on the grid's table (`bench/replay.py`) agrees with real
training: `--quick --versus-table bench/grid_table.csv` trains the quick grid's methods live, replays the same
methods (same samplers, seeds, pruner, patience and trials) on the table's curves of the same configurations
and training seeds, and reports both side by side with the difference between live and tabled curves.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import optuna  # noqa: E402
from _common import add_output_args, describe_machine, markdown_table, median, publish  # noqa: E402

from optimize.results.record import read_record, stored_history  # noqa: E402
from optimize.search.config import StudyConfig, parse_config  # noqa: E402
from optimize.search.study import DIRECTION, make_pruner, make_sampler  # noqa: E402
from optimize.training.dataset import StudyData, load_study_data  # noqa: E402
from optimize.workers.objective import Objective  # noqa: E402

USERS_LOSSES = ("dice", "focal", "tversky", "focal_tversky", "combined", "combined_tversky")


@dataclass(frozen=True)
class Scale:
    """The grid (architecture × batch size × loss at one learning rate) and the data and training around it."""

    architectures: tuple[str, ...]
    batch_sizes: tuple[int, ...]
    losses: tuple[str, ...]
    size: int
    n_images: int
    base_filters: int
    depth: int
    max_epochs: int
    patience: int
    learning_rate: float
    min_resource: int
    reduction_factor: int
    run_eagerly: bool = False

    @property
    def n_configs(self) -> int:
        return len(self.architectures) * len(self.batch_sizes) * len(self.losses)


# 86 images split 0.15 gives the users' 73 training images.
FULL = Scale(
    architectures=("unet", "resunet", "attention_unet", "attention_resunet"),
    batch_sizes=(4, 8, 16, 32),
    losses=USERS_LOSSES,
    size=512,
    n_images=86,
    base_filters=64,
    depth=4,
    max_epochs=100,
    patience=30,
    learning_rate=1e-4,
    min_resource=10,
    reduction_factor=3,
)
QUICK = Scale(
    architectures=("unet", "attention_resunet"),
    batch_sizes=(4, 16),
    losses=("dice", "combined"),
    size=64,
    n_images=86,
    base_filters=8,
    depth=3,
    max_epochs=10,
    patience=4,
    learning_rate=1e-3,
    min_resource=2,
    reduction_factor=2,
)
SMOKE = Scale(
    architectures=("unet",),
    batch_sizes=(4,),
    losses=("dice",),
    size=32,
    n_images=16,
    base_filters=4,
    depth=2,
    max_epochs=1,
    patience=1,
    learning_rate=1e-3,
    min_resource=1,
    reduction_factor=2,
    run_eagerly=True,
)


@dataclass(frozen=True)
class Method:
    """A search method: its sampler and pruner tables in study-config TOML."""

    name: str
    sampler: str
    pruner: str


def methods(scale: Scale) -> tuple[Method, ...]:
    startup = min(10, max(2, scale.n_configs // 4))
    asha = f'kind = "asha"\nmin_resource = {scale.min_resource}\nreduction_factor = {scale.reduction_factor}'
    return (
        Method("grid (users' way)", 'kind = "grid"', 'kind = "none"'),
        Method("random", 'kind = "random"', 'kind = "none"'),
        Method("TPE + ASHA", f'kind = "tpe"\nn_startup_trials = {startup}', asha),
    )


def jit_compile() -> bool:
    """XLA under JAX, where `jit_compile = false` runs every op eagerly; the project's default (off) elsewhere."""
    return keras.backend.backend() == "jax"


def study_toml(scale: Scale, method: Method, seed: int) -> str:
    """The study config of one method and repetition: same data, training and space for every method."""
    return f"""
description = "search-efficiency benchmark: {method.name}, seed {seed}"

[data]
val_fraction = 0.15

[data.synthetic]
n_images = {scale.n_images}
size = {scale.size}
seed = 0

[training]
base_filters = {scale.base_filters}
depth = {scale.depth}
learning_rate = {scale.learning_rate}
max_epochs = {scale.max_epochs}
patience = {scale.patience}
run_eagerly = {json.dumps(scale.run_eagerly)}
jit_compile = {json.dumps(jit_compile())}
seed = {seed}

[search]
architecture = {json.dumps(list(scale.architectures))}
batch_size = {json.dumps(list(scale.batch_sizes))}
loss = {json.dumps(list(scale.losses))}

[sampler]
{method.sampler}
seed = {seed}

[pruner]
{method.pruner}
"""


def make_config(scale: Scale, method: Method, seed: int) -> StudyConfig:
    text = study_toml(scale, method, seed)
    return parse_config(tomllib.loads(text), path=Path("bench.toml"), text=text)


@dataclass
class MethodRun:
    """One method on one seed: the val Jaccard curve of every trial, in trial order, and the wall time."""

    method: str
    seed: int
    curves: list[list[float]]
    wall_seconds: float
    configs: list[tuple[str, int, str]]

    @property
    def epochs(self) -> int:
        return sum(len(curve) for curve in self.curves)

    @property
    def best(self) -> float:
        return max((value for curve in self.curves for value in curve if math.isfinite(value)), default=math.nan)

    def epochs_to_reach(self, target: float) -> float:
        """Cumulative epochs until a val Jaccard >= target was first seen; infinity if never."""
        done = 0
        for curve in self.curves:
            for epoch, value in enumerate(curve, start=1):
                if value >= target:
                    return done + epoch
            done += len(curve)
        return math.inf


def run_method(config: StudyConfig, data: StudyData, method: str) -> MethodRun:
    """Run one in-memory study of `config` with the project's objective; as many trials as the grid."""
    n_trials = math.prod(len(param.choices) for param in config.search)
    study = optuna.create_study(
        storage=None,
        sampler=make_sampler(config.sampler, config.search),
        pruner=make_pruner(config.pruner, config.training.max_epochs),
        direction=DIRECTION,
    )
    started = time.perf_counter()
    label = f"{method} seed {config.training.seed}"

    def progress(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        print(
            f"  [{label}] trial {trial.number}: {trial.state.name.lower()} after "
            f"{read_record(trial).epochs_run} epochs, best {read_record(trial).best_val_jaccard} "
            f"{trial.params}  ({time.perf_counter() - started:.0f} s)",
            file=sys.stderr,
            flush=True,
        )

    study.optimize(Objective(config, data.train, data.val), n_trials=n_trials, callbacks=[progress])
    wall = time.perf_counter() - started
    curves = [
        [math.nan if value is None else value for value in stored_history(trial)["val_jaccard"]]
        for trial in study.get_trials(deepcopy=False)
    ]
    configs = [
        (trial.params["architecture"], trial.params["batch_size"], trial.params["loss"])
        for trial in study.get_trials(deepcopy=False)
    ]
    return MethodRun(method, config.training.seed, curves, wall, configs)


def summary_rows(runs: dict[str, list[MethodRun]], grid: str) -> list[list[str]]:
    """Median over seeds per method; ratios against the grid are per seed, in this same run."""
    rows = []
    for name, method_runs in runs.items():
        grid_runs = runs[grid]
        reach = [run.epochs_to_reach(grid_run.best) for run, grid_run in zip(method_runs, grid_runs, strict=True)]
        reached = sum(math.isfinite(value) for value in reach)
        median_reach = median(reach)
        rows.append(
            [
                name,
                f"{median(run.best for run in method_runs):.4f}",
                f"{median(run.epochs for run in method_runs):.0f}",
                f"{median(r.epochs / g.epochs for r, g in zip(method_runs, grid_runs, strict=True)):.2f}",
                f"{median(run.wall_seconds for run in method_runs) / 60:.1f}",
                f"{median(r.wall_seconds / g.wall_seconds for r, g in zip(method_runs, grid_runs, strict=True)):.2f}",
                "—"
                if name == grid
                else (f"{median_reach:.0f}" if math.isfinite(median_reach) else "not reached")
                + f" ({reached}/{len(reach)} seeds)",
            ]
        )
    return rows


def seed_rows(runs: dict[str, list[MethodRun]], grid: str) -> list[list[str]]:
    rows = []
    for name, method_runs in runs.items():
        for run, grid_run in zip(method_runs, runs[grid], strict=True):
            reach = run.epochs_to_reach(grid_run.best)
            rows.append(
                [
                    name,
                    str(run.seed),
                    f"{run.best:.4f}",
                    str(run.epochs),
                    f"{run.wall_seconds / 60:.1f}",
                    "—" if name == grid else (f"{reach:.0f}" if math.isfinite(reach) else "not reached"),
                ]
            )
    return rows


def versus_table(table_path: Path, scale: Scale, runs: dict[str, list[MethodRun]], grid: str) -> str:
    """The same methods replayed on the table's curves of the same configurations and seeds, beside the live
    runs, and how far the live curves are from the tabled ones."""
    import replay

    configurations = [(a, b, c) for a in scale.architectures for b in scale.batch_sizes for c in scale.losses]
    table = replay.read_table(table_path).restricted(configurations, scale.max_epochs)
    replayed: dict[str, list[MethodRun]] = {}
    for method in methods(scale):
        replayed[method.name] = []
        for run in runs[method.name]:
            if run.seed not in table.seeds:
                raise SystemExit(f"{table_path} has no complete seed {run.seed}; its seeds: {table.seeds}")
            config = make_config(scale, method, run.seed)
            trials = replay.replay_trials(
                table,
                replay.Method(method.name, config.sampler, config.pruner),
                seed=run.seed,
                curve_seed=run.seed,
                search=config.search,
                patience=scale.patience,
                n_trials=scale.n_configs,
            )
            curves, configs = [trial.curve for trial in trials], [trial.config for trial in trials]
            replayed[method.name].append(MethodRun(method.name, run.seed, curves, 0.0, configs))
    rows = []
    for name, method_runs in runs.items():
        for live, tabled, live_grid, tabled_grid in zip(
            method_runs, replayed[name], runs[grid], replayed[grid], strict=True
        ):
            same = sum(a == b for a, b in zip(live.configs, tabled.configs, strict=False))
            reach = (live.epochs_to_reach(live_grid.best), tabled.epochs_to_reach(tabled_grid.best))
            rows.append(
                [
                    name,
                    str(live.seed),
                    f"{live.best:.4f} / {tabled.best:.4f}",
                    f"{live.epochs} / {tabled.epochs}",
                    "—" if name == grid else " / ".join(f"{e:.0f}" if math.isfinite(e) else "never" for e in reach),
                    f"{same}/{len(live.configs)}",
                ]
            )
    differences = [
        abs(value - table.curves[config, run.seed][epoch])
        for method_runs in runs.values()
        for run in method_runs
        for config, curve in zip(run.configs, run.curves, strict=True)
        for epoch, value in enumerate(curve)
        if math.isfinite(value)
    ]
    return (
        f"Live against replayed on `{table_path.name}` (the same configurations and training seeds, curves cut at "
        f"{scale.max_epochs} epochs, early-stopping patience {scale.patience}); each cell is live / replayed.\n\n"
        + markdown_table(
            ["method", "seed", "best val Jaccard", "epochs", "epochs to grid best", "same configurations in order"],
            rows,
        )
        + f"\n\nLive val Jaccard against the table's at the same configuration, seed and epoch, over "
        f"{len(differences)} epochs of every live trial: mean |difference| {sum(differences) / len(differences):.4f}, "
        f"max {max(differences):.4f}."
    )


def describe_scale(scale: Scale, data: StudyData) -> str:
    return (
        f"Grid: {len(scale.architectures)} architectures {list(scale.architectures)} × batch {list(scale.batch_sizes)}"
        f" × {len(scale.losses)} losses {list(scale.losses)} = {scale.n_configs} configurations at learning rate "
        f"{scale.learning_rate:g}; random and TPE + ASHA search the same space with {scale.n_configs} trials. "
        f"Data: {data.source}, {data.stats['n_train']} train / {data.stats['n_val']} val. Training: base_filters "
        f"{scale.base_filters}, depth {scale.depth}, max_epochs {scale.max_epochs}, early-stopping patience "
        f"{scale.patience}, jit_compile {jit_compile()} (backend {keras.backend.backend()}), augmentation on. "
        f"ASHA: min_resource {scale.min_resource}, reduction_factor "
        f"{scale.reduction_factor}. Best = highest val Jaccard at any epoch of any trial (COMPLETE or PRUNED); "
        "'epochs to grid best' counts every epoch of earlier trials plus the epochs of the trial that reached it."
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2×2×2 grid at 64² with small models (CPU, ~30 min)")
    parser.add_argument("--seeds", type=int, default=3, help="repetitions; the table shows medians (default 3)")
    parser.add_argument("--data", default=None, help="folder with images/ and masks/ instead of synthetic beads")
    parser.add_argument(
        "--versus-table",
        type=Path,
        default=None,
        metavar="CSV",
        help="also replay the same methods on this grid table (bench/grid_table.csv; with --quick) and compare",
    )
    add_output_args(parser)
    args = parser.parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    scale = SMOKE if args.smoke else QUICK if args.quick else FULL
    seeds = list(range(1 if args.smoke else args.seeds))
    machine = describe_machine()
    all_methods = methods(scale)
    data = load_study_data(make_config(scale, all_methods[0], 0), args.data)
    runs: dict[str, list[MethodRun]] = {method.name: [] for method in all_methods}
    for seed in seeds:
        for method in all_methods:
            config = make_config(scale, method, seed)
            runs[method.name].append(run_method(config, data, method.name))
    grid = all_methods[0].name
    body = "\n\n".join(
        [
            describe_scale(scale, data),
            f"Median over {len(seeds)} seed(s); ratios are method ÷ grid of the same seed, measured in this run.",
            markdown_table(
                [
                    "method",
                    "best val Jaccard",
                    "epochs trained",
                    "epochs ÷ grid",
                    "wall (min)",
                    "wall ÷ grid",
                    "epochs to grid best",
                ],
                summary_rows(runs, grid),
            ),
            "Per seed:",
            markdown_table(
                ["method", "seed", "best val Jaccard", "epochs", "wall (min)", "epochs to grid best"],
                seed_rows(runs, grid),
            ),
        ]
    )
    if args.versus_table is not None:
        body += "\n\n" + versus_table(args.versus_table, scale, runs, grid)
    mode = "smoke" if args.smoke else "quick" if args.quick else "full"
    publish(args, f"Search efficiency ({mode}, {len(seeds)} seed(s))", body, machine)
    return 0


if __name__ == "__main__":
    sys.exit(main())

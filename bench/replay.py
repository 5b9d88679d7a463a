"""Search methods replayed against the grid's table of learning curves (`bench/grid_table.py`).

A replay is an in-memory Optuna study with the project's own sampler and pruner (`make_sampler`,
`make_pruner`; by default the TPE sampler of `SamplerConfig()` and the ASHA rungs `optimize new-study` plans
for the table's epochs, or a variant): a trial suggests architecture, batch size and loss,
then reads that configuration's curve epoch by epoch from the table (one training seed per replay), reports
each val Jaccard, is pruned when the pruner says so (never after its last epoch, as a live trial) and stops
early as the trainer does (`PATIENCE` epochs without a better val Jaccard). Epochs read are epochs spent.
Every method spends at most the grid's epochs (96 configurations to early stopping). Per method over `--replays`
replays:

- how often it reaches the grid's best of that seed (within `TOLERANCE`) using at most a third of the
  grid's epochs, and the median epochs it needed;
- the best val Jaccard found at fixed shares of the grid's epochs, and the wall time those epochs took
  when the table was built;
- the anytime curve (best so far against epochs spent), drawn into `bench/replay_anytime.png`.

    python bench/replay.py --replays 50 --tune   # and the variants of the defaults
    python bench/replay.py --smoke                # 2 replays of 2 methods

`bench/search_efficiency.py --quick --versus-table bench/grid_table.csv` checks that a replay agrees with
live training on the same small grid.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import itertools
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import optuna
from _common import add_output_args, describe_machine, markdown_table, publish

from optimize.search.config import PrunerConfig, SamplerConfig
from optimize.search.plans import rule_pruner
from optimize.search.settings import TrainSettings
from optimize.search.space import SearchSpace, parse_space
from optimize.search.study import DIRECTION, make_pruner, make_sampler

TABLE = Path(__file__).with_name("grid_table.csv")
FIGURE = Path(__file__).with_name("replay_anytime.png")
PATIENCE = 6
TOLERANCE = 0.005
BUDGET_SHARES = (0.1, 0.2, 1 / 3, 0.5, 1.0)
WARM_START = (
    {"architecture": "unet", "batch_size": 4, "loss": "combined"},
    {"architecture": "attention_resunet", "batch_size": 16, "loss": "focal_tversky"},
    {"architecture": "unet", "batch_size": 32, "loss": "dice"},
)
"""The users' known good configurations (`studies/microbead512.toml`'s [[enqueue]]) on the grid's axes."""

Key = tuple[str, int, str]


@dataclass(frozen=True)
class Table:
    """Curves by (configuration, seed): val Jaccard and seconds per epoch."""

    curves: dict[tuple[Key, int], np.ndarray]
    seconds: dict[tuple[Key, int], np.ndarray]
    configurations: list[Key]
    seeds: list[int]

    def grid_best(self, seed: int) -> float:
        """What the users' grid finds for `seed`: the best val Jaccard of any configuration before it stops early."""
        return max(early_stopped(self.curves[config, seed])[1] for config in self.configurations)

    def grid_epochs(self, seed: int) -> int:
        return sum(early_stopped(self.curves[config, seed])[0] for config in self.configurations)

    def restricted(self, configurations: list[Key], epochs: int) -> Table:
        """The table of `configurations` only, each curve cut after `epochs` epochs."""
        missing = [config for config in configurations if (config, self.seeds[0]) not in self.curves]
        if missing:
            raise SystemExit(f"the table has no curves of {missing}")
        kept = [key for key in self.curves if key[0] in configurations]
        return Table(
            {key: self.curves[key][:epochs] for key in kept},
            {key: self.seconds[key][:epochs] for key in kept},
            list(configurations),
            self.seeds,
        )


@dataclass(frozen=True)
class Method:
    name: str
    sampler: SamplerConfig
    pruner: PrunerConfig
    warm_start: bool = False


def read_table(path: Path) -> Table:
    """The table's complete runs (every epoch present), for the seeds that have every configuration."""
    rows: dict[tuple[Key, int], list[tuple[int, float, float]]] = {}
    with path.open(newline="") as file:
        for row in csv.DictReader(file):
            key = ((row["architecture"], int(row["batch_size"]), row["loss"]), int(row["seed"]))
            rows.setdefault(key, []).append((int(row["epoch"]), float(row["val_jaccard"]), float(row["seconds"])))
    length = max(len(epochs) for epochs in rows.values())
    complete = {key: sorted(epochs) for key, epochs in rows.items() if len(epochs) == length}
    configurations = sorted({config for config, _ in complete})
    seeds = sorted({seed for _, seed in complete if all((config, seed) in complete for config in configurations)})
    if not seeds:
        raise SystemExit(f"{path}: no seed has every configuration yet; let bench/grid_table.py finish one")
    curves = {key: np.array([value for _, value, _ in epochs]) for key, epochs in complete.items() if key[1] in seeds}
    seconds = {key: np.array([s for _, _, s in epochs]) for key, epochs in complete.items() if key[1] in seeds}
    return Table(curves, seconds, configurations, seeds)


def early_stopped(curve: np.ndarray, patience: int = PATIENCE) -> tuple[int, float]:
    """(epochs trained, best val Jaccard) of a curve under early stopping with `patience`."""
    best, best_epoch = -np.inf, 0
    for epoch, value in enumerate(curve, start=1):
        if value > best:
            best, best_epoch = value, epoch
        elif epoch - best_epoch >= patience:
            return epoch, float(best)
    return len(curve), float(best)


def default_pruner(epochs: int) -> PrunerConfig:
    """The ASHA rungs `optimize new-study` plans for trials of `epochs` epochs (on this table's 20 epochs, also
    `PrunerConfig()`'s own)."""
    return PrunerConfig(**rule_pruner(epochs).settings)


def methods(epochs: int = 20) -> list[Method]:
    """The users' grid, random search, and TPE with the study's default pruner and its variants."""
    tpe, asha = SamplerConfig(), default_pruner(epochs)
    return [
        Method("grid", SamplerConfig(kind="grid"), PrunerConfig(kind="none")),
        Method("random", SamplerConfig(kind="random"), PrunerConfig(kind="none")),
        Method("TPE + ASHA (defaults)", tpe, asha),
        Method("TPE + Hyperband", tpe, dataclasses.replace(asha, kind="hyperband")),
        Method("TPE, no pruning", tpe, PrunerConfig(kind="none")),
        Method("TPE + ASHA, warm start", tpe, asha, warm_start=True),
    ]


def tuning_variants(epochs: int = 20) -> list[Method]:
    """TPE + ASHA with other rungs, startup trials or a univariate TPE, to see what each setting does."""
    tpe, asha = SamplerConfig(), default_pruner(epochs)
    variants = []
    for min_resource, reduction_factor, startup in itertools.product((2, 3, 4, 5), (2, 3), (5, 10)):
        sampler = dataclasses.replace(tpe, n_startup_trials=startup)
        pruner = dataclasses.replace(asha, min_resource=min_resource, reduction_factor=reduction_factor)
        name = f"TPE ({startup} startup) + ASHA (min_resource {min_resource}, rf {reduction_factor})"
        variants.append(Method(name, sampler, pruner))
    variants.append(Method("TPE (univariate) + ASHA (defaults)", dataclasses.replace(tpe, multivariate=False), asha))
    return variants


def space(table: Table) -> SearchSpace:
    """The grid's axes as a study's [search] table."""
    axes = {
        "architecture": sorted({config[0] for config in table.configurations}),
        "batch_size": sorted({config[1] for config in table.configurations}),
        "loss": sorted({config[2] for config in table.configurations}),
    }
    return parse_space(axes, TrainSettings(), Path("replay.toml"))


@dataclass(frozen=True)
class ReadTrial:
    """One replayed trial: its configuration and the val Jaccards it read before it stopped early, was pruned
    or the budget ran out."""

    config: Key
    curve: list[float]


def replay_trials(
    table: Table,
    method: Method,
    seed: int,
    curve_seed: int,
    *,
    search: SearchSpace | None = None,
    patience: int = PATIENCE,
    n_trials: int | None = None,
    budget: float = float("inf"),
) -> list[ReadTrial]:
    """One search on `search` (the table's axes by default) until `n_trials` trials or `budget` epochs."""
    search = search or space(table)
    epochs_in_table = len(next(iter(table.curves.values())))
    study = optuna.create_study(
        direction=DIRECTION,
        sampler=make_sampler(dataclasses.replace(method.sampler, seed=seed), search),
        pruner=make_pruner(method.pruner, epochs_in_table),
    )
    if method.warm_start:
        for point in WARM_START:
            if tuple(point.values()) in table.configurations:
                study.enqueue_trial(point)
    trials: list[ReadTrial] = []
    spent = 0

    def objective(trial: optuna.Trial) -> float:
        nonlocal spent
        config = tuple(search.suggest(trial)[name] for name in ("architecture", "batch_size", "loss"))
        read = ReadTrial(config, [])
        trials.append(read)
        top, since = -np.inf, 0
        for epoch, value in enumerate(table.curves[config, curve_seed], start=1):
            spent += 1
            read.curve.append(float(value))
            top, since = (value, 0) if value > top else (top, since + 1)
            trial.report(float(value), epoch)
            if since >= patience or spent >= budget:
                break
            if epoch < epochs_in_table and trial.should_prune():
                raise optuna.TrialPruned()
        return float(top)

    stop_when_spent: Callable = lambda study, trial: study.stop() if spent >= budget else None  # noqa: E731
    if n_trials is None and method.sampler.kind == "grid":
        n_trials = len(table.configurations)
    study.optimize(objective, n_trials=n_trials, callbacks=[stop_when_spent])
    return trials


def anytime_curve(trials: list[ReadTrial]) -> list[tuple[int, float]]:
    """(epochs spent, best so far) after every epoch read."""
    spent, best, points = 0, -np.inf, []
    for trial in trials:
        for value in trial.curve:
            spent += 1
            best = max(best, value)
            points.append((spent, best))
    return points


def replay(table: Table, method: Method, seed: int, curve_seed: int) -> list[tuple[int, float]]:
    """One search until it has spent the grid's epochs: (epochs spent, best so far) after each epoch."""
    return anytime_curve(replay_trials(table, method, seed, curve_seed, budget=table.grid_epochs(curve_seed)))


def best_at(anytime: list[tuple[int, float]], epochs: float) -> float:
    """Best val Jaccard found within `epochs` epochs."""
    values = [best for spent, best in anytime if spent <= epochs]
    return values[-1] if values else float("nan")


def epochs_to(anytime: list[tuple[int, float]], target: float) -> int | None:
    return next((spent for spent, best in anytime if best >= target - TOLERANCE), None)


def draw(curves: dict[str, list[list[tuple[int, float]]]], budget: int, path: Path) -> None:
    """Median and quartiles of best-so-far against epochs, one line per method."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    figure = Figure(figsize=(9, 5.5), dpi=120)
    axes = figure.add_subplot()
    grid_points = np.arange(1, budget + 1)
    lowest = np.inf
    for name, runs in curves.items():
        values = np.array([[best_at(run, epochs) for epochs in grid_points] for run in runs])
        median = np.nanmedian(values, axis=0)
        low, high = np.nanpercentile(values, [25, 75], axis=0)
        axes.plot(grid_points, median, label=name)
        axes.fill_between(grid_points, low, high, alpha=0.15)
        lowest = min(lowest, float(np.nanmin(low[budget // 20 :])))
    axes.axvline(budget / 3, color="grey", linestyle=":", label="1/3 of the grid's epochs")
    axes.set_ylim(bottom=lowest - 0.02)  # from 5 % of the budget on: the first trials' low values hide the race
    axes.set_xlabel("epochs spent")
    axes.set_ylabel("best val Jaccard so far (median, quartiles)")
    axes.set_title("Anytime performance on the grid's table")
    axes.legend(loc="lower right", fontsize=8)
    axes.grid(alpha=0.3)
    figure.savefig(path, bbox_inches="tight")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replays", type=int, default=50, help="replays per method (default 50)")
    parser.add_argument("--table", type=Path, default=TABLE, help=f"the table (default {TABLE.name})")
    parser.add_argument("--figure", type=Path, default=FIGURE, help=f"the anytime figure (default {FIGURE.name})")
    parser.add_argument("--tune", action="store_true", help="also replay TPE + ASHA with other rungs and startups")
    add_output_args(parser)
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    table = read_table(args.table)
    epochs = len(next(iter(table.curves.values())))
    chosen = methods(epochs)[1:3] if args.smoke else methods(epochs) + (tuning_variants(epochs) if args.tune else [])
    replays = 2 if args.smoke else args.replays
    machine = describe_machine()
    rows, curves = [], {}
    started = time.perf_counter()
    for method in chosen:
        runs, reached, needed, found = [], 0, [], {share: [] for share in BUDGET_SHARES}
        for index in range(replays):
            curve_seed = table.seeds[index % len(table.seeds)]
            anytime = replay(table, method, seed=index, curve_seed=curve_seed)
            runs.append(anytime)
            budget = table.grid_epochs(curve_seed)
            epochs = epochs_to(anytime, table.grid_best(curve_seed))
            reached += epochs is not None and epochs <= budget / 3
            needed.append(epochs / budget if epochs is not None else float("inf"))
            for share in BUDGET_SHARES:
                found[share].append(best_at(anytime, share * budget))
        curves[method.name] = runs
        median_needed = statistics.median(needed)
        rows.append(
            [
                method.name,
                f"{reached}/{replays}",
                "never" if median_needed == float("inf") else f"{median_needed:.2f}",
                *(f"{statistics.median(found[share]):.4f}" for share in BUDGET_SHARES),
            ]
        )
        print(f"{method.name}: reached the grid's best within 1/3 of its epochs in {reached}/{replays}", flush=True)
    budget = table.grid_epochs(table.seeds[0])
    main_methods = {method.name for method in methods(epochs)}
    draw({name: runs for name, runs in curves.items() if name in main_methods}, budget, args.figure)
    seconds_per_epoch = np.mean([seconds[1:].mean() for seconds in table.seconds.values()])
    headers = [
        "method",
        "grid best within 1/3 epochs",
        "median epochs to grid best ÷ grid",
        *(f"best at {share:.0%} of grid epochs" for share in BUDGET_SHARES),
    ]
    body = (
        f"Table `{args.table.name}`: {len(table.configurations)} configurations × seeds {table.seeds}, "
        f"{len(next(iter(table.curves.values())))} epochs each; the grid with early stopping (patience {PATIENCE}) "
        f"spends {budget} epochs (seed {table.seeds[0]}), about {budget * seconds_per_epoch / 60:.0f} min at the "
        f"table's {seconds_per_epoch:.2f} s per epoch. {replays} replays per method, replay i reading seed "
        f"i mod {len(table.seeds)}; 'grid best' = the best val Jaccard the grid finds for that seed, reached within "
        f"{TOLERANCE}. Replays took {time.perf_counter() - started:.0f} s in all.\n\n"
        + markdown_table(headers, rows)
        + f"\n\n![anytime curves]({args.figure.name})"
    )
    publish(args, "Search methods replayed on the grid's table" + (" (smoke)" if args.smoke else ""), body, machine)
    return 0


if __name__ == "__main__":
    sys.exit(main())

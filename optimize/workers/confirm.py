"""`optimize confirm`: re-train a study's best configurations with new seeds, or on cross-validation folds.

A search ranks configurations by one training run each, and one run's val Jaccard moves with the seed of
its weights and data order. `optimize confirm --study NAME --top-k K --seeds N` takes the K best COMPLETE
trials of NAME (with distinct parameters) and trains each N more times, with new seeds and the same
split, to full length and without pruning; `--folds F` trains each on F stratified folds instead
(fold i validates on its images and trains on the rest, as nnU-Net does). The runs are trials of a
companion study, NAME-confirm (`optimize.search.study.confirm_study_name`), in the same storage: TPE's
history in NAME stays clean and the dashboard shows both.

The companion is an ordinary study run by `optimize.workers.worker.run_worker`, with `WorkerHooks`: its
config is NAME's stored config with `seed` searched over the new seeds (or the fold as a parameter),
a random sampler, no pruner and a budget of exactly the planned runs, all queued by the worker that
creates it. Every node runs the same command, as with `run`: joiners find the queue filled and take
from it, and no worker asks the sampler for a configuration of its own. Stop signals, heartbeats,
retries and out-of-memory fallbacks work as they do for `run`. The plan (`optimize.results.confirmation`)
is stored with the companion, so a node with other `--top-k`, `--seeds` or `--folds` is refused.

This module does not load Keras until a worker starts training: a pool's parent process never does.
"""

from __future__ import annotations

import dataclasses
import json
import re
import sys
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import optuna
from optuna.trial import FrozenTrial, TrialState

from optimize.errors import UserError
from optimize.limits import MAX_SEED
from optimize.results.confirmation import (
    CONFIRM_ATTR,
    configuration,
    confirmation_plan,
    confirmed_pick,
    format_confirmation,
    ranked_complete,
)
from optimize.results.record import (
    CONFIRM_FOLD,
    CONFIRM_OF,
    CONFIRM_SEED,
    Reason,
    fixed_params,
    store_reason,
    study_metric,
)
from optimize.search.config import StudyConfig, parse_config
from optimize.search.settings import TrainSettings
from optimize.search.study import confirm_study_name, load_existing_study
from optimize.storage import checkpoint_sqlite, open_storage, resolve_url, with_retry

if TYPE_CHECKING:
    from optimize.training.dataset import StudyData
    from optimize.workers.pool import WorkerSpec
    from optimize.workers.worker import WorkerHooks

FOLD_PARAM = "fold"
"""The parameter that names a cross-validation run's fold (0..F-1); not a training setting."""
SEED_PARAM = "seed"
DEFAULT_TOP_K = 3
DEFAULT_SEEDS = 3
BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


@dataclass(frozen=True)
class ConfirmOptions:
    """Command-line options of `optimize confirm`, as each worker process needs them."""

    study: str
    top_k: int = DEFAULT_TOP_K
    seeds: int | None = None
    folds: int | None = None
    storage: str | None = None
    data: str | None = None
    verbose: bool = False
    compile_cache: str | None = None
    allow_cpu: bool = False
    artifacts: str | None = None
    rank: int = 0
    n_workers: int | None = None
    """Set in a pool's worker process (`--n-workers`, with `--rank`); None in the command a person starts."""

    @property
    def n_seeds(self) -> int:
        """New seeds per configuration: `--seeds`, its default without `--folds`, none with it."""
        if self.folds is not None:
            return 0
        return self.seeds if self.seeds is not None else DEFAULT_SEEDS

    def worker_args(self) -> list[str]:
        """These options as `optimize confirm` arguments of a worker process (rank and workers added by the pool)."""
        args = ["--study", self.study, "--top-k", str(self.top_k)]
        args += ["--folds", str(self.folds)] if self.folds is not None else ["--seeds", str(self.n_seeds)]
        for flag, value in (
            ("--storage", self.storage),
            ("--data", self.data),
            ("--compile-cache", self.compile_cache),
            ("--artifacts", self.artifacts),
        ):
            if value is not None:
                args += [flag, str(value)]
        return args + (["--verbose"] if self.verbose else []) + (["--allow-cpu"] if self.allow_cpu else [])


@dataclass(frozen=True)
class ConfirmPlan:
    """What a confirmation runs: the source study's trials to repeat (best first) and the new seeds or folds.

    Each run is one queued trial of the companion study: the source trial's parameters plus `seed`
    (or `fold`), with the user attrs `confirm_of` and `confirm_seed` (or `confirm_fold`). Runs are
    queued seed by seed (fold by fold), so that a walltime that cuts the confirmation short leaves
    every configuration with as many runs as possible.
    """

    source: str
    top_k: int
    seeds: tuple[int, ...]
    folds: int | None
    trials: tuple[FrozenTrial, ...]

    @property
    def name(self) -> str:
        return confirm_study_name(self.source)

    def stored(self) -> dict:
        """The plan as the companion study's user attr `confirm` (`optimize.results.confirmation.CONFIRM_ATTR`)."""
        return {
            "source": self.source,
            "top_k": self.top_k,
            "seeds": list(self.seeds),
            "folds": self.folds,
            "source_trials": [trial.number for trial in self.trials],
        }

    def runs(self) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        """Every run's parameters and user attrs, in the order they are queued."""
        runs = []
        if self.folds is not None:
            for fold in range(self.folds):
                for trial in self.trials:
                    runs.append(({**trial.params, FOLD_PARAM: fold}, {CONFIRM_OF: trial.number, CONFIRM_FOLD: fold}))
        else:
            for seed in self.seeds:
                for trial in self.trials:
                    params = {**configuration(trial.params), SEED_PARAM: seed}
                    runs.append((params, {CONFIRM_OF: trial.number, CONFIRM_SEED: seed}))
        return runs

    def run_attrs(self, params: dict[str, Any] | None) -> dict[str, Any] | None:
        """The user attrs of the planned run with these parameters, or None when no run has them."""
        if not params:
            return None
        wanted = run_key(params)
        return next((attrs for planned, attrs in self.runs() if run_key(planned) == wanted), None)

    def describe(self) -> str:
        """One line: which trials, how they are re-run, and where."""
        trials = ", ".join(f"{trial.number} ({trial.value:.4f})" for trial in self.trials)
        if self.folds is not None:
            how = f"each trained on {self.folds} stratified folds (fold i validates on its images, trains on the rest)"
        else:
            seeds = f"seed{'s' * (len(self.seeds) > 1)} {', '.join(map(str, self.seeds))}"
            how = f"each re-trained with {seeds} (weights and data order; same split)"
        return (
            f"confirm study {self.source}: top {len(self.trials)} trials {trials}, {how}, to full length without "
            f"pruning: {len(self.runs())} runs as trials of study {self.name}"
        )


def run_key(params: dict[str, Any]) -> str:
    """A run's parameters as one comparable text (JSON keeps every float exactly)."""
    return json.dumps(params, sort_keys=True)


def run_confirm(
    options: ConfirmOptions,
    stream: TextIO | None = None,
    pool: list[WorkerSpec] | None = None,
    shared_gpu: bool = False,
) -> int:
    """Plan the confirmation, then run its trials here (one worker) or in the `pool`'s processes.

    Bad input (no such study, no COMPLETE trial, other options than the confirmation was made with, data
    that cannot be loaded) ends the command with one line before the storage is written and before Keras
    loads, and once, not in every worker. Ends with the table per configuration
    (`optimize.results.confirmation.confirmation_table`), unless interrupted or a pool's worker process.
    """
    from optimize.training.dataset import load_study_data

    stream = stream or sys.stdout
    url = resolve_url(options.study, options.storage)
    reader = open_storage(url, read_only=True)
    source, plan = plan_confirmation(options, reader, stream)
    config = confirm_config(source, plan)
    check_folds(source, plan)
    data = load_study_data(config, options.data)
    if options.n_workers is None:
        print(plan.describe(), file=stream, flush=True)
    if pool is not None:
        from optimize.workers.pool import run_worker_pool

        del data  # checked; each worker loads its own
        if isinstance(reader, optuna.storages.RDBStorage):
            reader.engine.dispose()  # an open reader keeps the workers' last close from checkpointing SQLite's WAL
        code = run_worker_pool(options.worker_args(), pool, shared_gpu, stream, subcommand="confirm")
        checkpoint_sqlite(url)
    else:
        code = run_one_worker(options, url, config, lambda: confirm_hooks(plan, config, source), stream, data)
    if code == 0 and options.n_workers is None:
        print_table(plan, url, stream)
    return code


def run_one_worker(
    options: ConfirmOptions,
    url: str,
    config: StudyConfig,
    hooks: Callable[[], WorkerHooks],
    stream: TextIO,
    data: StudyData,
) -> int:
    """Run the companion study's queued trials in this process on the checked `data`, as `optimize run` runs
    a study's.

    Keras loads first, with TensorFlow's start-up lines held back (as `run` does); then the `hooks`.
    """
    from optimize.keras_import import import_keras

    import_keras(quiet=not options.verbose)
    from optimize.workers.options import RunOptions
    from optimize.workers.worker import run_worker

    run_options = RunOptions(
        study=config.name,
        storage=url,
        data=options.data,
        verbose=options.verbose,
        compile_cache=options.compile_cache,
        allow_cpu=options.allow_cpu,
        artifacts=options.artifacts,
        rank=options.rank,
        n_workers=options.n_workers or 1,
    )
    return run_worker(run_options, stream, config=config, hooks=hooks(), data=data)


def plan_confirmation(
    options: ConfirmOptions, storage: optuna.storages.BaseStorage, stream: TextIO
) -> tuple[optuna.Study, ConfirmPlan]:
    """The source study and the plan: the stored one of an existing confirmation, else its top-k trials now.

    Raises `UserError` for a missing study, one without COMPLETE trials, a confirmation study given as
    the source, and options that differ from those the existing confirmation was made with.
    """
    source = load_existing_study(options.study, storage)
    if confirmation_plan(source) is not None:
        raise UserError(f"study {options.study} is itself a confirmation; give the study it confirms")
    trials = with_retry(lambda: source.get_trials(deepcopy=False), "reading trials")
    ranked = ranked_complete(trials)
    if not ranked:
        counts = ", ".join(
            f"{sum(t.state == state for t in trials)} {state.name}"
            for state in TrialState
            if any(t.state == state for t in trials)
        )
        raise UserError(f"study {options.study} has no COMPLETE trial to confirm ({counts or 'no trials'})")
    name = confirm_study_name(options.study)
    names = with_retry(lambda: optuna.get_all_study_names(storage=storage), "listing studies")
    existing = optuna.load_study(study_name=name, storage=storage) if name in names else None
    stored = confirmation_plan(existing) if existing is not None else None
    if stored is not None:
        return source, stored_plan(options, source, stored)
    held = len(with_retry(lambda: existing.get_trials(deepcopy=False), "reading trials")) if existing else 0
    if held:  # a confirmation's first worker stores its plan before queuing any run
        raise UserError(
            f"study {name} exists and is not a confirmation of study {options.study} (it holds {held} trials and no "
            f"`{CONFIRM_ATTR}` plan); confirm writes its runs there: rename or delete that study "
            f"(optuna delete-study --study-name {name} --storage URL)"
        )
    chosen = distinct_best(ranked, options.top_k)
    if len(chosen) < options.top_k:
        print(
            f"study {options.study} has {len(chosen)} COMPLETE trial{'s' * (len(chosen) != 1)} with distinct "
            f"parameters, fewer than --top-k {options.top_k}: confirming {'those' if len(chosen) > 1 else 'that'} "
            f"{len(chosen)}",
            file=stream,
        )
    seeds = new_seeds(source_seeds(source, chosen), options.n_seeds)
    plan = ConfirmPlan(options.study, options.top_k, seeds, options.folds, tuple(chosen))
    return source, plan


def stored_plan(options: ConfirmOptions, source: optuna.Study, stored: dict) -> ConfirmPlan:
    """The plan the existing confirmation study holds, if this command asks for the same; else `UserError`."""
    made_with = plan_options(stored["top_k"], len(stored["seeds"]), stored["folds"])
    asked = plan_options(options.top_k, options.n_seeds, options.folds)
    name = confirm_study_name(options.study)
    if made_with != asked:
        raise UserError(
            f"study {name} was made by `optimize confirm {made_with}`; this command says {asked}: give every node "
            f"the same options, or delete study {name} to start over (optuna delete-study --study-name {name} "
            "--storage URL)"
        )
    by_number = {trial.number: trial for trial in source.get_trials(deepcopy=False)}
    missing = [number for number in stored["source_trials"] if number not in by_number]
    if missing:
        raise UserError(f"study {name} confirms trials {missing} of study {options.study}, which it no longer holds")
    trials = tuple(by_number[number] for number in stored["source_trials"])
    return ConfirmPlan(options.study, stored["top_k"], tuple(stored["seeds"]), stored["folds"], trials)


def plan_options(top_k: int, seeds: int, folds: int | None) -> str:
    """The options that define a confirmation, as the command line gives them."""
    return f"--top-k {top_k} " + (f"--folds {folds}" if folds is not None else f"--seeds {seeds}")


def distinct_best(ranked: list[FrozenTrial], top_k: int) -> list[FrozenTrial]:
    """The first `top_k` of the ranked trials, skipping one whose parameters an earlier one already has
    (a queued configuration run twice would otherwise be confirmed twice)."""
    chosen: list[FrozenTrial] = []
    seen: set[str] = set()
    for trial in ranked:
        key = run_key(trial.params)
        if key not in seen:
            seen.add(key)
            chosen.append(trial)
        if len(chosen) == top_k:
            break
    return chosen


def source_seeds(source: optuna.Study, trials: list[FrozenTrial]) -> set[int]:
    """The seeds the single runs trained with: the source study's `[training] seed`, or their `seed` parameter."""
    config_table = source_table(source)
    used = {int(config_table.get("training", {}).get(SEED_PARAM, TrainSettings().seed))}
    return used | {int(trial.params[SEED_PARAM]) for trial in trials if SEED_PARAM in trial.params}


def new_seeds(used: set[int], count: int) -> tuple[int, ...]:
    """`count` seeds that no single run used: the next integers after the smallest used seed."""
    seeds: list[int] = []
    candidate = min(used)
    while len(seeds) < count:
        candidate = (candidate + 1) % (MAX_SEED + 1)
        if candidate not in used:
            seeds.append(candidate)
    return tuple(seeds)


def source_table(source: optuna.Study) -> dict[str, Any]:
    """The source study's stored config file (user attr `config_toml`) as a TOML table."""
    text = source.user_attrs.get("config_toml")
    if not text:
        raise UserError(
            f"study {source.study_name} has no stored config (user attr config_toml): it was made by an older "
            "optimize, and confirm re-trains exactly what the study ran"
        )
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        message = f"study {source.study_name}: its stored config (user attr config_toml) is not TOML: {error}"
        raise UserError(message) from None


def confirm_config(source: optuna.Study, plan: ConfirmPlan) -> StudyConfig:
    """The companion study's config: the source's stored config with its runs' parameter, no pruner, a random
    sampler (never asked: every run is queued) and a budget of exactly the planned runs.

    Its text, stored as the companion's `config_toml`, is the TOML of that table; its path stays the source's
    config file, against which a relative `[data] dir` resolves.
    """
    table = source_table(source)
    training = dict(table.get("training", {}))
    search = dict(table.get("search", {}))
    if plan.folds is None:
        training.pop(SEED_PARAM, None)
        search[SEED_PARAM] = list(plan.seeds)
    how = f"{plan.folds}-fold cross-validation" if plan.folds is not None else f"{len(plan.seeds)} new seeds"
    changes = {
        "description": f"confirmation of study {plan.source}: its top {len(plan.trials)} configurations, {how}",
        "training": training,
        "search": search,
        "sampler": {"kind": "random"},
        "pruner": {"kind": "none"},
        "budget": {"max_trials": len(plan.runs())},
    }
    derived = {key: changes.get(key, value) for key, value in table.items() if key != "enqueue"}
    derived.update({key: value for key, value in changes.items() if key not in derived})
    path = Path(source.user_attrs.get("config_file") or f"{plan.source}.toml")
    config = parse_config(derived, path=path, text=toml_text(derived))
    return dataclasses.replace(config, name=plan.name)


def check_folds(source: optuna.Study, plan: ConfirmPlan) -> None:
    """Refuse more folds than the source study has images (from its stored data statistics)."""
    if plan.folds is None:
        return
    stats = source.user_attrs.get("data_stats") or {}
    n_images = int(stats.get("n_images") or (stats.get("n_train", 0) + stats.get("n_val", 0)))
    if n_images and plan.folds > n_images:
        raise UserError(
            f"--folds {plan.folds}: study {plan.source} has {n_images} images, fewer than the folds; "
            f"use at most --folds {n_images}"
        )


def confirm_hooks(plan: ConfirmPlan, config: StudyConfig, source: optuna.Study) -> WorkerHooks:
    """What the companion's workers do differently from `run`'s: queue the plan's runs, train on the source's
    data (on a fold, with `--folds`), train only queued runs, and stop when none is left to take."""
    from optimize.workers.worker import BudgetReached, WorkerHooks

    source_data = (source.user_attrs.get("fingerprint") or {}).get("data")

    def enqueue(study: optuna.Study, created: bool) -> None:
        if created:
            study.set_user_attr(CONFIRM_ATTR, plan.stored())
        else:
            stored = confirmation_plan(study)
            if stored is not None and stored != plan.stored():
                raise UserError(
                    f"study {plan.name} was made for {stored}; this command plans {plan.stored()}: run the same "
                    "command on every node"
                )
        for params, attrs in plan.runs():
            study.enqueue_trial(params, user_attrs=attrs, skip_if_exists=True)

    def use_data(data: StudyData) -> Callable[[optuna.Trial], tuple] | None:
        check_same_data(plan.source, source_data, config, data)
        if plan.folds is None:
            return None
        from optimize.training.dataset import fold_data

        folds = plan.folds
        split_seed = config.data.split_seed
        return lambda trial: fold_data(
            data, folds, trial.suggest_categorical(FOLD_PARAM, list(range(folds))), seed=split_seed
        )

    def before_trial(trial: optuna.Trial) -> None:
        frozen = trial._cached_frozen_trial
        attrs = plan.run_attrs(fixed_params(frozen) or frozen.params)
        if attrs is None:
            # Another worker took the last queued run between this worker's check and its ask.
            store_reason(trial, Reason.BUDGET)
            trial.study.stop()
            raise BudgetReached(f"not a run of the confirmation: every run of study {plan.name} is taken")
        for key, value in attrs.items():
            if frozen.user_attrs.get(key) != value:
                trial.set_user_attr(key, value)  # a queued copy (interrupted, heartbeat-stale) starts without them

    return WorkerHooks(
        enqueue=enqueue,
        use_data=use_data,
        nothing_left=lambda study: nothing_left(study, plan),
        before_trial=before_trial,
        show_best=False,
    )


def check_same_data(source_name: str, stored: dict | None, config: StudyConfig, data: StudyData) -> None:
    """Refuse data other than the source study trained on (its fingerprint's data part), before any trial."""
    if stored is None:
        return
    from optimize.search.fingerprint import data_fingerprint, differences

    found = differences({"data": stored}, {"data": data_fingerprint(config, data)})
    if found:
        raise UserError(
            f"data {data.source} is not what study {source_name} trained on ({found[0].key} differs); "
            "confirm re-trains on the same data: give --data the study's folder"
        )


def nothing_left(study: optuna.Study, plan: ConfirmPlan) -> str | None:
    """Why this worker has no run left to start (no queued run), or None while one is queued.

    Heartbeat-stale trials (a dead worker's) are failed first, which queues them again for this worker.
    """
    from optuna.storages._heartbeat import is_heartbeat_enabled

    if is_heartbeat_enabled(study._storage):
        optuna.storages.fail_stale_trials(study)
    trials = study.get_trials(deepcopy=False)
    if any(trial.state == TrialState.WAITING for trial in trials):
        return None
    planned = {run_key(params) for params, _ in plan.runs()}

    def runs_in(*states: TrialState) -> set[str]:
        return {
            run_key(fixed_params(trial) or trial.params)
            for trial in trials
            if trial.state in states and (fixed_params(trial) or trial.params)
        } & planned

    complete = runs_in(TrialState.COMPLETE)
    running = runs_in(TrialState.RUNNING) - complete
    failed = planned - complete - running - runs_in(TrialState.PRUNED)
    line = f"no queued run left in study {plan.name}: {len(complete)} of {len(planned)} runs complete"
    if running:
        line += f", {len(running)} running in other workers"
    if failed:
        line += f", {len(failed)} failed and not queued again (see optimize status --study {plan.name})"
    return line + "; nothing to do"


def print_table(plan: ConfirmPlan, url: str, stream: TextIO) -> None:
    """The end table: each configuration's re-runs, mean ± std, beside its single run in the source study."""
    storage = open_storage(url, read_only=True)
    source = load_existing_study(plan.source, storage)
    confirm = load_existing_study(plan.name, storage)
    found = confirmed_pick(source, confirm)
    runs = len(plan.seeds) or plan.folds
    kind = ("seed" if plan.folds is None else "fold") + "s" * (runs > 1)
    print(
        f"confirmation, {runs} {kind} per configuration: mean ± std of val_jaccard and object_f1 at each run's "
        f"best epoch; single run: the trial's {study_metric(source)} in study {plan.source}",
        file=stream,
    )
    print(format_confirmation(found.table), file=stream)
    print(found.summary(), file=stream, flush=True)


def toml_text(table: dict[str, Any]) -> str:
    """A TOML document for a table as `tomllib` reads one: top-level keys, then `[section]`s with inline
    tables below them, then arrays of tables (`[[name]]`)."""
    lines = [f"{_key(key)} = {_value(value)}" for key, value in table.items() if not _is_section(value)]
    for key, value in table.items():
        if isinstance(value, dict):
            lines += ["", f"[{_key(key)}]", *(f"{_key(name)} = {_value(item)}" for name, item in value.items())]
    for key, value in table.items():
        if _is_section(value) and isinstance(value, list):
            for entry in value:
                lines += ["", f"[[{_key(key)}]]", *(f"{_key(name)} = {_value(item)}" for name, item in entry.items())]
    return "\n".join(lines).lstrip("\n") + "\n"


def _is_section(value: Any) -> bool:
    return isinstance(value, dict) or (
        isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)
    )


def _key(key: str) -> str:
    return key if BARE_KEY.fullmatch(key) else json.dumps(key)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_value(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{_key(name)} = {_value(item)}" for name, item in value.items()) + " }"
    raise TypeError(f"cannot write {value!r} as TOML")

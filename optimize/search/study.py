"""The Optuna study of a config: sampler, pruner, creation or joining, enqueued trials and the budget."""

from __future__ import annotations

import json
import time
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState

from optimize.errors import UserError
from optimize.results.record import ENQUEUED
from optimize.search.config import PrunerConfig, SamplerConfig, StudyConfig
from optimize.search.fingerprint import (
    FINGERPRINT_ATTR,
    Difference,
    StudyMismatchError,
    differences,
    recorded_pruner,
    refusal,
    safe_changes,
    shown_path,
    study_fingerprint,
)
from optimize.search.space import SearchSpace
from optimize.storage import with_retry

if TYPE_CHECKING:
    from optimize.training.dataset import StudyData

DIRECTION = "maximize"
FINGERPRINT_WAIT_SECONDS = 10.0
FINGERPRINT_POLL_SECONDS = 0.2
SETTLE_SECONDS = 1.0
BUDGET_STATES = (TrialState.COMPLETE, TrialState.PRUNED)
RAN_STATES = (TrialState.RUNNING, TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
"""States of trials that have left the queue: a study holding one was made, and ran, before this worker."""
PACKAGES = (
    "microbead-optimize",
    "optuna",
    "optuna-integration",
    "keras",
    "tensorflow",
    "tensorflow-cpu",
    "jax",
    "numpy",
    "sqlalchemy",
)


CONFIRM_SUFFIX = "-confirm"


def confirm_study_name(study_name: str) -> str:
    """The companion study in which `optimize confirm` re-trains study `study_name`'s best configurations."""
    return f"{study_name}{CONFIRM_SUFFIX}"


def study_objective(config: StudyConfig) -> dict[str, str]:
    """What the study maximizes: the study file's `metric` (val Jaccard by default) and the direction."""
    return {"metric": config.metric, "direction": DIRECTION}


def make_sampler(
    config: SamplerConfig, search: SearchSpace, rank: int = 0, n_workers: int = 1, trials_before: int = 0
) -> optuna.samplers.BaseSampler:
    """The configured sampler; each worker's seed is `seed + rank` so workers never suggest alike.

    A worker that joins a study already holding `trials_before` trials seeds from (seed, rank, trials_before):
    with `seed + rank` again, a second run of the same command would draw the first run's points once more
    (a random search, or TPE's start-up trials). A grid takes lists of choices only, as the study file's
    check guarantees.
    """
    seed = None if config.seed is None else config.seed + rank
    if seed is not None and trials_before:
        seed = int(np.random.SeedSequence([config.seed, rank, trials_before]).generate_state(1)[0])
    if config.kind == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if config.kind == "grid":
        return optuna.samplers.GridSampler(search.grid(), seed=seed)
    return optuna.samplers.TPESampler(
        n_startup_trials=max(config.n_startup_trials, n_workers),
        multivariate=config.multivariate,
        constant_liar=config.constant_liar,
        seed=seed,
    )


def make_pruner(config: PrunerConfig, max_epochs: int) -> optuna.pruners.BasePruner:
    """The configured pruner; steps are epochs counted from 1."""
    if config.kind == "asha":
        return optuna.pruners.SuccessiveHalvingPruner(
            min_resource=config.min_resource,
            reduction_factor=config.reduction_factor,
            min_early_stopping_rate=config.min_early_stopping_rate,
        )
    if config.kind == "hyperband":
        return optuna.pruners.HyperbandPruner(
            min_resource=config.min_resource,
            max_resource=config.max_resource or max_epochs,
            reduction_factor=config.reduction_factor,
        )
    if config.kind == "median":
        return optuna.pruners.MedianPruner(
            n_startup_trials=config.n_startup_trials, n_warmup_steps=config.n_warmup_steps
        )
    return optuna.pruners.NopPruner()


def open_study(
    config: StudyConfig, storage: optuna.storages.BaseStorage | str, *, rank: int = 0, n_workers: int = 1
) -> optuna.Study:
    """Create the study or join it (as with `load_if_exists`), as every node does with the same command."""
    return create_or_join(config, storage, rank=rank, n_workers=n_workers)[0]


def follow_recorded_pruner(config: StudyConfig, storage: optuna.storages.BaseStorage) -> tuple[StudyConfig, str | None]:
    """`config` with the `[pruner]` settings its file leaves unset as the existing study recorded them, and a
    line saying which (None when nothing was taken): a study keeps its rungs when a default changes."""

    def stored_fingerprint() -> dict | None:
        try:
            study_id = storage.get_study_id_from_name(config.name)
        except KeyError:
            return None
        return storage.get_study_user_attrs(study_id).get(FINGERPRINT_ATTR)

    followed, taken = recorded_pruner(config, with_retry(stored_fingerprint, "reading the study's attrs"))
    if not taken:
        return config, None
    return followed, (
        f"[pruner] {', '.join(taken)} as study {config.name} was created with: {shown_path(config.path)} leaves "
        f"{'it' if len(taken) == 1 else 'them'} unset, and the default has changed since"
    )


def create_or_join(
    config: StudyConfig, storage: optuna.storages.BaseStorage | str, *, rank: int = 0, n_workers: int = 1
) -> tuple[optuna.Study, bool]:
    """The config's study and whether this call created it: of workers starting at once, exactly one creates it."""
    sampler = make_sampler(config.sampler, config.search, rank, n_workers)
    pruner = make_pruner(config.pruner, config.training.max_epochs)

    def create_or_load() -> tuple[optuna.Study, bool]:
        try:
            created = optuna.create_study(
                study_name=config.name, storage=storage, sampler=sampler, pruner=pruner, direction=DIRECTION
            )
            return created, True
        except optuna.exceptions.DuplicatedStudyError:
            study = optuna.load_study(study_name=config.name, storage=storage, sampler=sampler, pruner=pruner)
            check_one_maximized(study)
            trials_before = 0 if config.sampler.seed is None else len(study.get_trials(deepcopy=False))
            if trials_before:
                study.sampler = make_sampler(config.sampler, config.search, rank, n_workers, trials_before)
            return study, False

    return with_retry(create_or_load, "opening the study")


def record_study_attrs(study: optuna.Study, config: StudyConfig, data: StudyData, *, created: bool) -> str:
    """Record what the study is made of when it is created; when joining, refuse other settings or data.

    The creator stores the fingerprint (see `optimize.search.fingerprint`) first, then the config text and
    file, package versions, data statistics and budget. A joining worker compares its fingerprint
    with the stored one and raises `StudyMismatchError`, before writing anything, when a defining
    setting or the data differ. It never rewrites the stored attrs, except `max_trials`, the budget
    that `optimize status` shows, which follows the latest worker's `[budget]`. A study made before
    fingerprints existed gets this worker's fingerprint, once. Returns the line to print.
    """
    current = study_fingerprint(config, data, study_objective(config))
    if created:
        check_same(study, config, data, claim_fingerprint(study, current, settle=0.0), current)
        with_retry(lambda: study.set_metric_names([config.metric]), "storing the study's attrs")
        write_missing_attrs(study, config, data.stats)
        return f"created study {study.study_name}; its settings and data are recorded as user attr {FINGERPRINT_ATTR!r}"
    stored = wait_for_fingerprint(study)
    if stored is None:
        check_same(study, config, data, claim_fingerprint(study, current, settle=SETTLE_SECONDS), current)
        write_missing_attrs(study, config, data.stats)
        return (
            f"joined study {study.study_name}, made before fingerprints existed: recorded this worker's settings "
            f"and data as its fingerprint (user attr {FINGERPRINT_ATTR!r}); later workers must match them"
        )
    found = check_same(study, config, data, stored, current)
    if study_attrs(study).get("max_trials") != config.budget.max_trials:
        set_attr(study, "max_trials", config.budget.max_trials)
    if any(difference.safe for difference in found):
        return safe_changes(study.study_name, found)
    return f"joined study {study.study_name}: same settings and data as when it was created"


def check_same(
    study: optuna.Study, config: StudyConfig, data: StudyData, stored: dict, current: dict
) -> list[Difference]:
    """The differences between the stored fingerprint and this worker's; `StudyMismatchError` if any is not safe."""
    if not isinstance(stored, dict):
        raise StudyMismatchError(
            f"study {study.study_name}: its user attr {FINGERPRINT_ATTR!r} is not the table optimize writes (edited "
            "by hand?), so this worker cannot check that its settings and data match: start over with --new-study "
            "NAME2"
        )
    found = differences(stored, current)
    if any(not difference.safe for difference in found):
        stored_source = (study_attrs(study).get("data_stats") or {}).get("source", "the data it was created with")
        raise StudyMismatchError(refusal(study.study_name, found, config.path, (stored_source, data.source)))
    return found


def wait_for_fingerprint(study: optuna.Study) -> dict | None:
    """The stored fingerprint; for a study another worker has just created, once its creator has stored it.

    None for a study made before fingerprints existed (it holds a stored config or trials that have run), or
    when none appears within `FINGERPRINT_WAIT_SECONDS` (its creator died right after creating it). Queued
    trials alone prove nothing: a new study's creator enqueues its trials before it stores the fingerprint.
    """
    deadline = time.monotonic() + FINGERPRINT_WAIT_SECONDS
    while True:
        attrs = study_attrs(study)
        if FINGERPRINT_ATTR in attrs:
            return attrs[FINGERPRINT_ATTR]
        made_before = "config_toml" in attrs or with_retry(
            lambda: study.get_trials(deepcopy=False, states=RAN_STATES), "reading trials"
        )
        if made_before or time.monotonic() > deadline:
            return None
        time.sleep(FINGERPRINT_POLL_SECONDS)


def claim_fingerprint(study: optuna.Study, fingerprint: dict, settle: float) -> dict:
    """Store `fingerprint`, wait `settle` seconds and return the fingerprint the storage then holds.

    Of workers writing at nearly the same time the last write stands; each reads back what stands,
    so a worker whose fingerprint was overwritten is refused instead of both going on.
    """
    set_attr(study, FINGERPRINT_ATTR, fingerprint)
    time.sleep(settle)
    return study_attrs(study)[FINGERPRINT_ATTR]


def write_missing_attrs(study: optuna.Study, config: StudyConfig, data_stats: dict) -> None:
    """Store the config text and file, package versions, data statistics and budget, never over stored ones."""
    stored = study_attrs(study)
    values = {
        "config_toml": config.text,
        "config_file": str(config.path),
        "packages": package_versions(),
        "data_stats": json.loads(json.dumps(data_stats, default=float)),
        "max_trials": config.budget.max_trials,
    }
    for key, value in values.items():
        if key not in stored:
            set_attr(study, key, value)


def study_attrs(study: optuna.Study) -> dict:
    """The study's user attrs as the storage holds them now."""
    return with_retry(lambda: study.user_attrs, "reading the study's attrs")


def set_attr(study: optuna.Study, key: str, value: object) -> None:
    with_retry(lambda: study.set_user_attr(key, value), "storing the study's attrs")


def enqueue_known(study: optuna.Study, config: StudyConfig) -> None:
    """Queue the config's known configurations once, however many times and nodes run the study."""
    for params in config.enqueue:
        study.enqueue_trial(params, user_attrs={ENQUEUED: True}, skip_if_exists=True)


def budget_used(study: optuna.Study, before_trial: int | None = None) -> int:
    """COMPLETE + PRUNED trials, plus RUNNING ones that started before `before_trial` (when given)."""
    trials = study.get_trials(deepcopy=False, states=(*BUDGET_STATES, TrialState.RUNNING))
    return sum(
        1 for trial in trials if trial.state in BUDGET_STATES or (before_trial is None or trial.number < before_trial)
    )


def budget_reached(study: optuna.Study, max_trials: int | None, before_trial: int | None = None) -> bool:
    return max_trials is not None and budget_used(study, before_trial) >= max_trials


def stop_at_budget(max_trials: int | None):
    """A `study.optimize` callback that stops this worker once the study-wide budget is used."""

    def callback(study: optuna.Study, trial: FrozenTrial) -> None:
        if budget_reached(study, max_trials):
            study.stop()

    return callback


def package_versions() -> dict[str, str]:
    """Versions of the packages that shape results, for reproducibility."""
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            continue
    return versions


def load_existing_study(
    study_name: str, storage: optuna.storages.BaseStorage, *, any_objective: bool = False
) -> optuna.Study:
    """Load a study that must already exist; the error lists the studies the storage holds.

    Unless `any_objective`, the study must maximize one value (`check_one_maximized`).
    """
    names = with_retry(lambda: optuna.get_all_study_names(storage=storage), "listing studies")
    if study_name not in names:
        raise UserError(f"no study named {study_name!r} in this storage; it holds: {', '.join(names) or 'none'}")
    study = optuna.load_study(study_name=study_name, storage=storage)
    if not any_objective:
        check_one_maximized(study)
    return study


def check_one_maximized(study: optuna.Study) -> None:
    """UserError for a study that does not maximize one value, as this project's studies do (a user's own
    multi-objective or minimizing study): its best trial, rankings and exports would be wrong or fail."""
    directions = [direction.name.lower() for direction in study.directions]
    if directions != [DIRECTION]:
        raise UserError(
            f"study {study.study_name!r} has {len(directions)} objective(s) ({', '.join(directions)}); optimize "
            f"reads and runs studies that {DIRECTION} one value, as it makes them (optuna-dashboard shows any study)"
        )

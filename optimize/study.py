"""The Optuna study of a config: sampler, pruner, creation or joining, enqueued trials and the budget."""

from __future__ import annotations

import json
from importlib.metadata import PackageNotFoundError, version

import optuna
from optuna.trial import FrozenTrial, TrialState

from .config import ParamSpec, PrunerConfig, SamplerConfig, StudyConfig
from .errors import ConfigError, UserError
from .storage import with_retry

DIRECTION = "maximize"
OBJECTIVE_NAME = "val_jaccard"
BUDGET_STATES = (TrialState.COMPLETE, TrialState.PRUNED)
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


def make_sampler(
    config: SamplerConfig, search: tuple[ParamSpec, ...], rank: int = 0, n_workers: int = 1
) -> optuna.samplers.BaseSampler:
    """The configured sampler; each worker's seed is `seed + rank` so workers never suggest alike."""
    seed = None if config.seed is None else config.seed + rank
    if config.kind == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if config.kind == "grid":
        ranges = [param.name for param in search if not param.is_categorical]
        if ranges:
            raise ConfigError(f"grid sampler needs categorical choices; {', '.join(ranges)} is a range")
        return optuna.samplers.GridSampler({param.name: list(param.choices) for param in search}, seed=seed)
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
    """Create the study or join it (`load_if_exists`), as every node does with the same command."""
    return with_retry(
        lambda: optuna.create_study(
            study_name=config.name,
            storage=storage,
            sampler=make_sampler(config.sampler, config.search, rank, n_workers),
            pruner=make_pruner(config.pruner, config.training.max_epochs),
            direction=DIRECTION,
            load_if_exists=True,
        ),
        "opening the study",
    )


def record_study_attrs(study: optuna.Study, config: StudyConfig, data_stats: dict) -> None:
    """Store the config text, package versions and data statistics as the study's user attrs."""
    study.set_metric_names([OBJECTIVE_NAME])
    study.set_user_attr("config_toml", config.text)
    study.set_user_attr("config_file", str(config.path))
    study.set_user_attr("packages", package_versions())
    study.set_user_attr("data_stats", json.loads(json.dumps(data_stats, default=float)))
    study.set_user_attr("max_trials", config.budget.max_trials)


def enqueue_known(study: optuna.Study, config: StudyConfig) -> None:
    """Queue the config's known configurations once, however many times and nodes run the study."""
    for params in config.enqueue:
        study.enqueue_trial(params, user_attrs={"enqueued": True}, skip_if_exists=True)


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


def load_existing_study(study_name: str, storage: optuna.storages.BaseStorage) -> optuna.Study:
    """Load a study that must already exist; the error lists the studies the storage holds."""
    names = with_retry(lambda: optuna.get_all_study_names(storage=storage), "listing studies")
    if study_name not in names:
        raise UserError(f"no study named {study_name!r} in this storage; it holds: {', '.join(names) or 'none'}")
    return optuna.load_study(study_name=study_name, storage=storage)

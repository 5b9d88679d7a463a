"""`optimize run`: one worker process joining the study and running trials until told to stop."""

from __future__ import annotations

import dataclasses
import os
import shlex
import sys
import time
from collections.abc import Callable
from typing import TextIO

import optuna
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy.engine import make_url

from optimize.keras_import import keras_backend
from optimize.results.record import Reason, store_reason
from optimize.results.status import best_text
from optimize.search.config import StudyConfig, load_config
from optimize.search.study import (
    budget_reached,
    budget_used,
    create_or_join,
    enqueue_known,
    follow_recorded_pruner,
    record_study_attrs,
    stop_at_budget,
)
from optimize.storage import default_url, is_journal, open_storage, redact, resolve_url
from optimize.storage.artifacts import model_keeper
from optimize.storage.resilient import ResilientStorage, worker_storage
from optimize.storage.retries import requeue
from optimize.training.allocator import keep_freed_memory
from optimize.training.autotune import apply_autotune_level
from optimize.training.compile_cache import enable_compile_cache, resolve_cache_dir
from optimize.training.dataset import StudyData, load_study_data
from optimize.training.device_check import check_device, several_gpus_note
from optimize.training.garbage import startup_objects_frozen
from optimize.training.injected_faults import error_injection, oom_injection, slow_step_injection
from optimize.workers.failures import EXIT_REPEATED_ERRORS, RepeatedErrors
from optimize.workers.interrupt import InterruptWatch
from optimize.workers.objective import Objective, TrialAbandoned
from optimize.workers.options import GPU_REQUESTED_ENV, RunOptions
from optimize.workers.progress import EpochProgress, print_trial


class BudgetReached(Exception):
    """Raised at the start of a trial that would exceed the study-wide `max_trials`."""


@dataclasses.dataclass(frozen=True)
class WorkerHooks:
    """What a command built on this worker changes in it (`optimize confirm`); each None keeps `run`'s way.

    `enqueue(study, created)` queues the study's trials instead of `[[enqueue]]` (the creator's call comes
    before the fingerprint, which joiners wait for). `use_data(data)` sees the loaded data first (it may
    refuse it) and returns the function that gives a trial its own train, val and val-label arrays, or
    None. `nothing_left(study)` says why this worker has no trial to start (checked before the first
    and after each trial), or None. `before_trial(trial)` runs after `run`'s own checks and may end the
    trial unrun by raising. `show_best`: end with the study's best trial.
    """

    enqueue: Callable[[optuna.Study, bool], None] | None = None
    use_data: Callable[[StudyData], Callable[[optuna.Trial], tuple] | None] | None = None
    nothing_left: Callable[[optuna.Study], str | None] | None = None
    before_trial: Callable[[optuna.Trial], None] | None = None
    show_best: bool = True


def run_worker(
    options: RunOptions,
    stream: TextIO | None = None,
    config: StudyConfig | None = None,
    hooks: WorkerHooks | None = None,
    data: StudyData | None = None,
) -> int:
    """Run trials for this worker; returns the process exit code (128 + signal when interrupted).

    `config` and `data` are the study file and its data as the caller already loaded them (else they are
    loaded here): once per process.
    """
    stream = stream or sys.stdout
    keep_freed_memory()
    with InterruptWatch(stream=stream) as watch:
        config = config or load_config(options.study)
        return run_trials(options, stream, watch, config, hooks or WorkerHooks(), data)


def run_trials(
    options: RunOptions,
    stream: TextIO,
    watch: InterruptWatch,
    config: StudyConfig,
    hooks: WorkerHooks,
    data: StudyData | None = None,
) -> int:
    """The body of `run_worker`, with the signal watch installed."""
    config = with_study_name(with_seed(config, options.seed), options.new_study)
    if config.runs_op_by_op(keras_backend()) and options.rank == 0:  # once in a pool: its first worker
        print(
            f"note: {config.path}: [training] jit_compile is off, so under JAX each operation of a training "
            "step runs as its own program (17x slower); set jit_compile = true",
            file=stream,
            flush=True,
        )
    autotune = apply_autotune_level(config.training.xla_autotune_level)
    cache_dir = enable_compile_cache(resolve_cache_dir(options.compile_cache))
    data = data if data is not None else load_study_data(config, options.data)
    data_for = hooks.use_data(data) if hooks.use_data else None
    note = several_gpus_note(check_device(config, data, options.allow_cpu, stream, os.environ.get(GPU_REQUESTED_ENV)))
    if note is not None:
        print(note, file=stream, flush=True)
    url = resolve_url(config.name, options.storage)
    keep_model = model_keeper(config, url, options.artifacts)
    storage = open_storage(url, None if is_journal(url) else config.recovery)
    storage = worker_storage(storage, config.recovery, url)
    config, followed = follow_recorded_pruner(config, storage)
    study, created = create_or_join(config, storage, rank=options.rank, n_workers=options.n_workers)
    enqueue = hooks.enqueue or (lambda study, created: enqueue_known(study, config))
    if created:
        # Before the fingerprint, which joining workers wait for: they then find the queue filled.
        enqueue(study, True)
    joined = record_study_attrs(study, config, data, created=created)
    if not created:
        enqueue(study, False)
    print_header(study, config, data.stats, url, stream)
    print(joined, file=stream)
    if followed is not None:
        print(followed, file=stream)
    if (never_prunes := config.pruner.never_prunes_note(config.training.max_epochs)) is not None:
        print(never_prunes, file=stream)
    if (oversized := config.oversized_batches_note(len(data.train[0]))) is not None:
        print(oversized, file=stream)
    if cache_dir is not None:
        print(f"cache {cache_dir} (compiled programs, shared by workers)", file=stream)
    if autotune is not None:
        print(autotune, file=stream)
    if keep_model is not None:
        print(keep_model.describe, file=stream)
    elif options.artifacts:
        print(f"note: --artifacts {options.artifacts} unused: [artifacts] keep_models = 0 keeps no model", file=stream)
    idle = hooks.nothing_left(study) if hooks.nothing_left else None
    if idle is not None:
        print(idle, file=stream)
        return 0
    max_trials = config.budget.max_trials
    if budget_reached(study, max_trials):
        print(
            f"budget reached: {budget_used(study)} of max_trials = {max_trials} trials; nothing to do",
            file=stream,
        )
        return 0

    def before_trial(trial: optuna.Trial) -> None:
        if watch.requested:
            # The signal came between trials: hand this one back before it trains.
            store_reason(trial, Reason.INTERRUPTED)
            requeue(trial, "interrupted")
            study.stop()
            watch.raise_if_requested()
        if budget_reached(study, max_trials, before_trial=trial.number):
            store_reason(trial, Reason.BUDGET)
            study.stop()
            raise BudgetReached(f"study budget of {max_trials} trials reached")
        if hooks.before_trial is not None:
            hooks.before_trial(trial)

    errors = RepeatedErrors(config.recovery.stop_after_repeated_errors, stream)
    objective = Objective(
        config,
        data.train,
        data.val,
        callbacks=lambda trial, settings: [
            EpochProgress(trial.number, settings.max_epochs, stream, settings.micro_batch_size),
            watch.callback(),
            *oom_injection(settings),
            *slow_step_injection(),
            *error_injection(),
        ],
        verbose=2 if options.verbose else 0,
        before_trial=before_trial,
        on_error=errors.on_error,
        val_labels=data.val_labels,
        data_for=data_for,
        keep_model=keep_model,
    )
    watch.hand_back = objective.hand_back_running
    try:
        optimize_until_done(
            study,
            objective,
            n_trials=options.n_trials,
            timeout=options.timeout,
            callbacks=[
                print_trial(stream),
                errors,
                stop_at_budget(max_trials),
                watch.stop_study,
                *([stop_when_idle(hooks.nothing_left)] if hooks.nothing_left else []),
            ],
            stopped=lambda: watch.requested,
            stream=stream,
        )
    except KeyboardInterrupt:
        print("stopped at once by a second signal; trial marked FAIL", file=stream, flush=True)
        return watch.exit_code if watch.requested else 130
    except Exception:
        # Past `[recovery] reconnect_timeout` every storage call fails; Optuna may have wrapped that failure
        # in its own (it reads the trial back when its final write fails): report the cause.
        if isinstance(storage, ResilientStorage) and storage.unreachable is not None:
            raise storage.unreachable from None
        raise
    if watch.requested:
        handed_back = objective.handed_back
        what = "no trial was running" if handed_back is None else f"trial {handed_back} was handed back to the study"
        print(f"interrupted: {what}; exiting {watch.exit_code}", file=stream, flush=True)
        return watch.exit_code
    if errors.stop_message is not None:
        print(errors.stop_message, file=stream, flush=True)
        return EXIT_REPEATED_ERRORS
    if budget_reached(study, max_trials):  # it may have ended this worker before its --n-trials or --timeout
        print(
            f"budget reached: {budget_used(study)} of max_trials = {max_trials} trials; this worker stops", file=stream
        )
    if hooks.show_best:
        print_best(study, url, stream)
    return 0


def stop_when_idle(nothing_left: Callable[[optuna.Study], str | None]):
    """A `study.optimize` callback that stops this worker once `nothing_left` finds no trial for it."""

    def callback(study: optuna.Study, trial: FrozenTrial) -> None:
        if nothing_left(study) is not None:
            study.stop()

    return callback


def optimize_until_done(
    study: optuna.Study,
    objective: Objective,
    *,
    n_trials: int | None,
    timeout: float | None,
    callbacks: list[Callable[[optuna.Study, optuna.trial.FrozenTrial], None]],
    stopped: Callable[[], bool],
    stream: TextIO,
) -> None:
    """`study.optimize` for `n_trials` trials or `timeout` seconds in all, going on after a trial it had to leave.

    Such a trial (`TrialAbandoned`) was already failed and queued again by another worker, after this
    worker's heartbeat could not be written for the grace period. When the database is gone for
    good, `DatabaseUnreachable` is raised instead. Nothing starts once `stopped()` is true. The collection
    after each trial skips the objects alive when this starts (`optimize.training.garbage`).
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    with startup_objects_frozen():
        while not stopped():
            remaining_trials = None if n_trials is None else n_trials - objective.started
            remaining_time = None if deadline is None else deadline - time.monotonic()
            if remaining_trials == 0 or (remaining_time is not None and remaining_time <= 0):
                return
            try:
                study.optimize(
                    objective,
                    n_trials=remaining_trials,
                    timeout=remaining_time,
                    callbacks=callbacks,
                    catch=(Exception,),
                    gc_after_trial=True,
                )
                return
            except TrialAbandoned as abandoned:
                if not isinstance(abandoned.cause, optuna.exceptions.UpdateFinishedTrialError):
                    raise abandoned.cause from None
                print(
                    f"trial {abandoned.number} was failed by another worker while this one trained it (no heartbeat "
                    "within the grace period) and queued again; this worker goes on with the next trial",
                    file=stream,
                    flush=True,
                )


def with_seed(config: StudyConfig, seed: int | None) -> StudyConfig:
    """The config with `--seed` as the sampler seed, when given."""
    if seed is None:
        return config
    return dataclasses.replace(config, sampler=dataclasses.replace(config.sampler, seed=seed))


def with_study_name(config: StudyConfig, name: str | None) -> StudyConfig:
    """The config's study under `--new-study NAME`, when given (a new study; the old one is left as it is)."""
    return config if name is None else dataclasses.replace(config, name=name)


def print_header(study: optuna.Study, config: StudyConfig, stats: dict, url: str, stream: TextIO) -> None:
    trials = study.get_trials(deepcopy=False)
    print(f"study {study.study_name}  storage {redact(url)}  ({trial_counts(trials)})", file=stream)
    print(
        f"data  {stats['source']}: {stats['n_train']} train / {stats['n_val']} val, "
        f"{stats['objects_per_image_mean']:.1f} objects/image, {100 * stats['foreground_fraction']:.1f} % foreground",
        file=stream,
    )
    print(f"space {config.search.summary()}", file=stream)
    print(
        f"       sampler {config.sampler.kind}, pruner {config.pruner.kind}, "
        f"max_epochs {config.training.max_epochs}, budget {config.budget.max_trials or 'none'}",
        file=stream,
    )


def trial_counts(trials: list[FrozenTrial]) -> str:
    """'3 queued, 0 finished', with 'N running' between when other workers train: enqueued trials are not yet run."""
    queued = sum(trial.state == TrialState.WAITING for trial in trials)
    running = sum(trial.state == TrialState.RUNNING for trial in trials)
    finished = sum(trial.state.is_finished() for trial in trials)
    return f"{queued} queued, " + (f"{running} running, " if running else "") + f"{finished} finished"


def print_best(study: optuna.Study, url: str, stream: TextIO) -> None:
    try:
        best = study.best_trial
    except ValueError:
        print("no trial has completed yet", file=stream)
        return
    print(f"best  {best_text(study, best)}", file=stream)
    print(f"      export it with: {export_command(study.study_name, url)}", file=stream)


def export_command(study_name: str, url: str) -> str:
    """The `optimize export-best` command that finds this study, `--storage` included unless it is the default.

    A password is never printed: the URL then shows it as `***`, and the line says to put it back.
    """
    command = f"optimize export-best --study {shlex.quote(study_name)}"
    if url == default_url(study_name):
        return command
    if not is_journal(url) and make_url(url).password is not None:
        return f"{command} --storage {shlex.quote(redact(url))}  (with the password in place of ***)"
    return f"{command} --storage {shlex.quote(url)}"

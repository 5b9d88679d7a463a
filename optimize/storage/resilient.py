"""A worker's study storage that survives a dropped database connection.

A database restart, a failover or a network cut drops a worker's connections in the middle of a
call. Optuna re-raises each such error as `StorageInternalError`, which fails the trial, ends the
heartbeat thread or, while the trial's result is being recorded, the worker. `ResilientStorage`
sits between Optuna and the storage, so that every call, those `study.optimize` makes itself
included (creating a trial, the heartbeat, the final state), is retried on a new connection until
the database has been unreachable for `[recovery] reconnect_timeout` seconds; then the call raises
`DatabaseUnreachable`. Reads and upserts are safe to repeat as they are; the two writes that are
not (creating a trial, changing its state) are checked after a retry, because the attempt whose
connection dropped may have been committed.

It also counts the seconds each thread spends in its calls (`seconds_in_calls`), retries and their waits
included, so that a trial can tell how much of its time went to the database (`time_split`).
"""

from __future__ import annotations

import copy
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Container, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import optuna
from optuna.distributions import BaseDistribution
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import BaseStorage
from optuna.storages._heartbeat import BaseHeartbeat
from optuna.study import StudyDirection
from optuna.study._frozen import FrozenStudy
from optuna.trial import FrozenTrial, TrialState

from optimize.errors import DatabaseUnreachable
from optimize.results.record import Reason, reason_attrs
from optimize.storage import Reconnector, describe, is_transient, reason
from optimize.storage.retries import RetryStaleTrial

if TYPE_CHECKING:
    from optimize.search.config import RecoveryConfig

CREATED_BY = "created_by"
"""System attr of each trial a worker creates: `host:pid:token`, unique per creation, so a trial created
twice (the first attempt committed, but its connection dropped before the answer) is found."""
POOL_LOGGER = "sqlalchemy.pool.impl.QueuePool"

log = logging.getLogger(__name__)
T = TypeVar("T")


def worker_storage(storage: BaseStorage, recovery: RecoveryConfig, url: str) -> BaseStorage:
    """The storage a worker runs trials on: `ResilientStorage` around database storage, others unchanged."""
    if isinstance(storage, optuna.storages.RDBStorage):
        pool_log = logging.getLogger(POOL_LOGGER)
        if not any(isinstance(installed, DroppedConnectionReset) for installed in pool_log.filters):
            pool_log.addFilter(DroppedConnectionReset())
        return ResilientStorage(storage, recovery, describe(url))
    return storage


class DroppedConnectionReset(logging.Filter):
    """One warning line instead of SQLAlchemy's traceback when a connection the server closed cannot be reset.

    The pool rolls a connection back as it takes it back; on a connection that the server dropped
    (MySQL/MariaDB drivers notice only then), that fails, and the pool discards the connection. The
    call that used it is retried; the traceback would only look like a crash.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if error is not None and type(error).__name__ in ("OperationalError", "InterfaceError"):
            record.msg, record.args = "%s on a dropped connection (%s); the pool discarded it", (record.msg, error)
            record.exc_info = record.exc_text = None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


class ResilientStorage(BaseStorage, BaseHeartbeat):
    """Optuna storage that retries each call while the database is unreachable (see the module doc).

    Wraps an `RDBStorage` in Optuna's cache as `optuna.create_study` would, and keeps heartbeats on;
    heartbeat-stale trials are retried with a clean record (`RetryStaleTrial`).
    """

    def __init__(self, storage: optuna.storages.RDBStorage, recovery: RecoveryConfig, where: str) -> None:
        self._storage = optuna.storages.get_storage(storage)
        self.reconnector = Reconnector(recovery.reconnect_timeout, where, "[recovery] reconnect_timeout")
        self._retry_stale = RetryStaleTrial(recovery.max_retry)
        self._creator = f"{socket.gethostname()}:{os.getpid()}"
        self._call_seconds = threading.local()

    @property
    def unreachable(self) -> DatabaseUnreachable | None:
        """Set once the worker has given up on the database: every call fails at once from then on."""
        return self.reconnector.unreachable

    def seconds_in_calls(self) -> float:
        """Seconds the calling thread has spent in this storage's calls so far; each thread counts its own.

        A trial reads it before and after: the difference is its time in the database, waits for a
        dropped connection included.
        """
        return getattr(self._call_seconds, "total", 0.0)

    def _call(self, what: str, action: Callable[[], T]) -> T:
        started = time.perf_counter()
        try:
            return self.reconnector.call(action, what)
        finally:
            self._call_seconds.total = self.seconds_in_calls() + time.perf_counter() - started

    # Studies.

    def create_new_study(self, directions: Sequence[StudyDirection], study_name: str | None = None) -> int:
        # Repeated after a commit it raises DuplicatedStudyError, which create-or-join handles.
        return self._call("creating the study", lambda: self._storage.create_new_study(directions, study_name))

    def delete_study(self, study_id: int) -> None:
        self._call("deleting the study", lambda: self._storage.delete_study(study_id))

    def set_study_user_attr(self, study_id: int, key: str, value: Any) -> None:
        self._call("storing a study attr", lambda: self._storage.set_study_user_attr(study_id, key, value))

    def set_study_system_attr(self, study_id: int, key: str, value: Any) -> None:
        self._call("storing a study attr", lambda: self._storage.set_study_system_attr(study_id, key, value))

    def get_study_id_from_name(self, study_name: str) -> int:
        return self._call("reading the study", lambda: self._storage.get_study_id_from_name(study_name))

    def get_study_name_from_id(self, study_id: int) -> str:
        return self._call("reading the study", lambda: self._storage.get_study_name_from_id(study_id))

    def get_study_directions(self, study_id: int) -> list[StudyDirection]:
        return self._call("reading the study", lambda: self._storage.get_study_directions(study_id))

    def get_study_user_attrs(self, study_id: int) -> dict[str, Any]:
        return self._call("reading the study's attrs", lambda: self._storage.get_study_user_attrs(study_id))

    def get_study_system_attrs(self, study_id: int) -> dict[str, Any]:
        return self._call("reading the study's attrs", lambda: self._storage.get_study_system_attrs(study_id))

    def get_all_studies(self) -> list[FrozenStudy]:
        return self._call("listing studies", self._storage.get_all_studies)

    # Trials.

    def create_new_trial(self, study_id: int, template_trial: FrozenTrial | None = None) -> int:
        """A new trial (from the template, when given), created once even when its connection dropped.

        The trial carries a token (system attr `created_by`); a copy created by a repeated attempt,
        Optuna's own or ours, is marked FAIL with the reason, so nothing is left RUNNING or queued twice.
        """
        token = f"{self._creator}:{uuid.uuid4().hex[:12]}"
        if template_trial is None:
            template = optuna.trial.create_trial(state=TrialState.RUNNING, system_attrs={CREATED_BY: token})
        else:
            template = copy.deepcopy(template_trial)
            template.system_attrs = {**template_trial.system_attrs, CREATED_BY: token}
        trial_id = self._call("creating a trial", lambda: self._storage.create_new_trial(study_id, template))
        for twin in self._created_with(study_id, token):
            if twin._trial_id != trial_id:
                self._fail_twin(twin, trial_id)
        return trial_id

    def _created_with(self, study_id: int, token: str) -> list[FrozenTrial]:
        trials = self._call(
            "reading trials",
            lambda: self._storage.get_all_trials(
                study_id, deepcopy=False, states=(TrialState.RUNNING, TrialState.WAITING)
            ),
        )
        return [trial for trial in trials if trial.system_attrs.get(CREATED_BY) == token]

    def _fail_twin(self, twin: FrozenTrial, kept_id: int) -> None:
        kept = self.get_trial(kept_id).number
        note = f"created twice when the database connection dropped; trial {kept} is the one that runs"
        for key, value in reason_attrs(Reason.ERROR, error=note).items():
            self.set_trial_user_attr(twin._trial_id, key, value)
        self.set_trial_state_values(twin._trial_id, TrialState.FAIL)
        log.warning("trial %d was %s: marked FAIL", twin.number, note)

    def set_trial_param(
        self, trial_id: int, param_name: str, param_value_internal: float, distribution: BaseDistribution
    ) -> None:
        # A repeated insert after a commit hits the unique key, which Optuna ignores.
        self._call(
            "storing a parameter",
            lambda: self._storage.set_trial_param(trial_id, param_name, param_value_internal, distribution),
        )

    def set_trial_state_values(self, trial_id: int, state: TrialState, values: Sequence[float] | None = None) -> bool:
        """Change the trial's state; False when it is not this worker's to change (Optuna's contract).

        After a dropped connection the first attempt may have been committed: a trial found in the
        requested state then counts as changed by this call. A trial that another worker finished
        first (a stale trial that worker failed and queued again) is left as it is, with one line,
        instead of the `UpdateFinishedTrialError` that ends Optuna's trial loop.
        """
        attempts = 0

        def attempt() -> bool:
            nonlocal attempts
            attempts += 1
            return self._storage.set_trial_state_values(trial_id, state=state, values=values)

        try:
            what = "claiming a queued trial" if state == TrialState.RUNNING else f"marking a trial {state.name}"
            changed = self._call(what, attempt)
        except UpdateFinishedTrialError:
            stored = self.get_trial(trial_id)
            if stored.state == state:
                return attempts > 1
            if state.is_finished():
                log.warning(
                    "trial %d is already %s (another worker failed it: no heartbeat within the grace period); "
                    "not storing it as %s",
                    stored.number,
                    stored.state.name,
                    state.name,
                )
            return False
        if state == TrialState.RUNNING and not changed and attempts > 1 and self.get_heartbeat_interval():
            # The dropped attempt may have claimed this queued trial: one heartbeat makes it go stale, and be
            # queued again, should nobody run it. A worker that does run it keeps the heartbeat fresh anyway.
            self._call("recording the heartbeat", lambda: self._storage.record_heartbeat(trial_id))
        return changed

    def set_trial_intermediate_value(self, trial_id: int, step: int, intermediate_value: float) -> None:
        self._call(
            "reporting to the study",
            lambda: self._storage.set_trial_intermediate_value(trial_id, step, intermediate_value),
        )

    def set_trial_user_attr(self, trial_id: int, key: str, value: Any) -> None:
        self._call("storing trial results", lambda: self._storage.set_trial_user_attr(trial_id, key, value))

    def set_trial_system_attr(self, trial_id: int, key: str, value: Any) -> None:
        self._call("storing a trial attr", lambda: self._storage.set_trial_system_attr(trial_id, key, value))

    def get_trial_id_from_study_id_trial_number(self, study_id: int, trial_number: int) -> int:
        return self._call(
            "reading a trial", lambda: self._storage.get_trial_id_from_study_id_trial_number(study_id, trial_number)
        )

    def get_trial(self, trial_id: int) -> FrozenTrial:
        return self._call("reading a trial", lambda: self._storage.get_trial(trial_id))

    def get_all_trials(
        self, study_id: int, deepcopy: bool = True, states: Container[TrialState] | None = None
    ) -> list[FrozenTrial]:
        return self._call("reading trials", lambda: self._storage.get_all_trials(study_id, deepcopy, states))

    def get_best_trial(self, study_id: int) -> FrozenTrial:
        return self._call("reading the best trial", lambda: self._storage.get_best_trial(study_id))

    def remove_session(self) -> None:
        self._storage.remove_session()

    # Heartbeat.

    def record_heartbeat(self, trial_id: int) -> None:
        """Record the trial's heartbeat; while the database is unreachable, retry for up to one interval.

        Optuna's heartbeat thread calls this again after each interval, so a heartbeat that cannot be
        written is retried until it is, or until the worker gives up; it never ends the thread.
        """
        interval = self.get_heartbeat_interval() or 1
        try:
            self.reconnector.call(
                lambda: self._storage.record_heartbeat(trial_id), "recording the heartbeat", patience=interval
            )
        except DatabaseUnreachable:
            return  # the trial loop raises it at its next storage call and ends the worker
        except Exception as error:
            if not is_transient(error):
                raise
            log.warning("recording the heartbeat failed (%s); trying again in %d s", reason(error), interval)

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        return self._call("looking for stale trials", lambda: self._storage._get_stale_trial_ids(study_id))

    def get_heartbeat_interval(self) -> int | None:
        return self._storage.get_heartbeat_interval()

    def get_heartbeat_stale_trial_callback(self) -> Callable[[optuna.Study, FrozenTrial], None] | None:
        return self._retry_stale

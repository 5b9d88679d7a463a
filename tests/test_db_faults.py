"""Fault injection on the real PostgreSQL: dropped connections, an unreachable database, killed workers;
and on MariaDB, a connection cut without a word.

Workers are real `optimize run` processes. A connection is dropped the way a database restart or a
failover drops it, with `pg_terminate_backend`; to drop it in the middle of a given call, the test
first holds a lock that this call waits for, so the worker's backend is terminated inside it. A relay
between a worker and the server (`CommitCutter`) loses the answer to chosen COMMITs: writes that were
committed although the worker saw its connection drop.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import re
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import sqlalchemy
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy.engine import make_url

from optimize.results.record import read_record, stored_history
from optimize.search.config import RecoveryConfig
from optimize.storage import engine_kwargs, is_transient, open_storage
from optimize.storage.database import MYSQL_LIVENESS
from tests.conftest import OPTIMIZE, POSTGRES_ADMIN, write_tiny_study
from tests.helpers import trials_of, wait_for

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


def start_worker(
    studies: Path, url: str, *args: str, env: dict[str, str] | None = None, log: Path | None = None
) -> subprocess.Popen:
    """`optimize run` on the tiny study, in a process group of its own (so it can be killed as a whole).

    Its stdout goes to `log` when given, so the test can read it while the worker runs.
    """
    with contextlib.ExitStack() as stack:
        stdout = subprocess.PIPE if log is None else stack.enter_context(log.open("w"))
        return subprocess.Popen(
            [OPTIMIZE, "run", "--study", "tiny", "--storage", url, *args],
            stdout=stdout,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "OPTIMIZE_STUDIES_DIR": str(studies), "PYTHONUNBUFFERED": "1", **(env or {})},
            start_new_session=True,
        )


def finish(worker: subprocess.Popen, timeout: float) -> tuple[int, str, str]:
    """Wait for a worker (killing its group if it overruns); its exit code, stdout and stderr."""
    try:
        out, err = worker.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(worker.pid, signal.SIGKILL)
        out, err = worker.communicate()
        raise AssertionError(f"worker {worker.pid} still running after {timeout} s:\n{out}\n{err}") from None
    return worker.returncode, out, err


def running(url: str, min_step: int = 1) -> list[FrozenTrial]:
    """RUNNING trials that have reported at least `min_step` epochs."""
    return [t for t in trials_of(url) if t.state == TrialState.RUNNING and (t.last_step or 0) >= min_step]


def with_faults(studies: Path, **settings: int) -> None:
    """Add `[recovery]` settings to the tiny study's config."""
    path = studies / "tiny.toml"
    lines = "".join(f"{key} = {value}\n" for key, value in settings.items())
    path.write_text(path.read_text().replace("[recovery]\n", f"[recovery]\n{lines}"))


def without_enqueued(studies: Path) -> None:
    """Drop the tiny study's `[[enqueue]]` trials, so a worker's first trial is a fresh one."""
    path = studies / "tiny.toml"
    path.write_text(path.read_text().split("[[enqueue]]")[0])


def worker_name(pid: int) -> str:
    """The `application_name` of a worker's connections (see `optimize.storage.engine_kwargs`)."""
    return f"optimize {socket.gethostname()}:{pid}"[:63]


@contextlib.contextmanager
def admin(url: str):
    engine = sqlalchemy.create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            yield connection
    finally:
        engine.dispose()


@contextlib.contextmanager
def holding(url: str, statement: str):
    """Hold the lock `statement` takes, in an open transaction, until the block ends."""
    engine = sqlalchemy.create_engine(url)
    try:
        with engine.connect() as connection, connection.begin() as transaction:
            connection.execute(sqlalchemy.text(statement))
            yield
            transaction.rollback()
    finally:
        engine.dispose()


def backends(
    url: str, pids: list[int] | None = None, *, waiting: bool = False, on_table: str | None = None, action: str = "pid"
) -> list:
    """`action` on the connections of these workers (all workers when None), those waiting for a lock if `waiting`,
    those whose statement names `on_table` if given.

    Asked through the server's admin database, so it works while the study's database refuses connections.
    """
    names = None if pids is None else [worker_name(pid) for pid in pids]
    query = (
        f"SELECT {action} FROM pg_stat_activity WHERE datname = :database AND application_name LIKE 'optimize %' "
        "AND (CAST(:names AS text[]) IS NULL OR application_name = ANY(:names))"
        + (" AND wait_event_type = 'Lock'" if waiting else "")
        + (" AND query LIKE :on_table" if on_table else "")
    )
    parameters = {"database": make_url(url).database, "names": names, "on_table": f"%{on_table}%"}
    with admin(POSTGRES_ADMIN) as connection:
        return connection.execute(sqlalchemy.text(query), parameters).scalars().all()


def terminate(url: str, pids: list[int] | None = None, *, waiting: bool = False) -> int:
    """`pg_terminate_backend` these workers' connections (all workers' when None); how many there were."""
    return len(backends(url, pids, waiting=waiting, action="pg_terminate_backend(pid)"))


def drop_inside_call(url: str, pid: int, table: str, what: str, timeout: float = 120) -> None:
    """Drop the worker's connections while one of them waits to use `table`, locked here: inside the call that
    needs it. (Any connection waiting for a lock would also catch one that waits for another: a trial's final
    write, once training has ended.)"""
    with holding(url, f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE"):
        wait_for(lambda: backends(url, [pid], waiting=True, on_table=table), timeout, f"the worker to wait for {what}")
        terminate(url, [pid])


class Relay:
    """A TCP relay on a free local port to the database server on `server_port`; `relay(client, server)`
    passes the bytes of each new connection."""

    def __init__(self, server_port: int) -> None:
        self.server_port = server_port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def url(self, url: str) -> str:
        return make_url(url).set(port=self.port).render_as_string(hide_password=False)

    def close(self) -> None:
        for end in [self._listener, *self._sockets]:
            end.close()

    def relay(self, client: socket.socket, server: socket.socket) -> None:
        raise NotImplementedError

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                client, _ = self._listener.accept()
                server = socket.create_connection(("127.0.0.1", self.server_port))
                self._sockets += [client, server]
                self.relay(client, server)


class CommitCutter(Relay):
    """A relay to the PostgreSQL server that loses the answer to chosen COMMITs.

    For each pattern in turn: once a client sends a statement that matches it, the next COMMIT on that
    connection reaches the server, which commits, but its answer is dropped and the connection closed,
    as when the network fails at that moment. The client sees a dropped connection after a write that
    was in fact committed.
    """

    def __init__(self, *patterns: bytes) -> None:
        self.patterns = [re.compile(pattern) for pattern in patterns]
        self.cut = 0
        self._lock = threading.Lock()
        super().__init__(5432)

    def relay(self, client: socket.socket, server: socket.socket) -> None:
        cutting = threading.Event()
        threading.Thread(target=self._to_server, args=(client, server, cutting), daemon=True).start()
        threading.Thread(target=self._to_client, args=(server, client, cutting), daemon=True).start()

    def _to_server(self, client: socket.socket, server: socket.socket, cutting: threading.Event) -> None:
        armed = False
        with contextlib.suppress(OSError):
            while data := client.recv(65536):
                with self._lock:
                    if not armed and self.cut < len(self.patterns) and self.patterns[self.cut].search(data):
                        armed, self.cut = True, self.cut + 1
                if armed and b"COMMIT" in data:
                    cutting.set()
                server.sendall(data)
                if cutting.is_set():
                    return

    def _to_client(self, server: socket.socket, client: socket.socket, cutting: threading.Event) -> None:
        with contextlib.suppress(OSError):
            while (data := server.recv(65536)) and not cutting.is_set():
                client.sendall(data)
        for end in (client, server):
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)
            end.close()


class SilentRelay(Relay):
    """A relay that falls silent on `cut()`: it passes no more bytes either way and closes nothing, as a
    firewall dropping packets or a dead database node would."""

    def __init__(self, server_port: int) -> None:
        self.silent = threading.Event()
        super().__init__(server_port)

    def cut(self) -> None:
        self.silent.set()

    def relay(self, client: socket.socket, server: socket.socket) -> None:
        for source, target in ((client, server), (server, client)):
            threading.Thread(target=self._pass, args=(source, target), daemon=True).start()

    def _pass(self, source: socket.socket, target: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while (data := source.recv(65536)) and not self.silent.is_set():
                target.sendall(data)


TENSORFLOW_LOG = re.compile(r"[IWEF]\d{4} [\d:.]+ +\d+ \S+:\d+\] ")
"""TensorFlow's own C++ log lines (absl format), which it may print at any moment during training."""


def assert_no_traceback(*outputs: str) -> None:
    for output in outputs:
        assert "Traceback" not in output, output


def test_worker_connections_are_named_and_notice_a_silent_cut(postgres_url):
    """A cut that answers nothing (a firewall, a dead node) must end in an error, which is retried, not a hang."""
    storage = open_storage(postgres_url, RecoveryConfig())
    try:
        with storage.engine.connect() as connection:
            assert connection.execute(sqlalchemy.text("SHOW application_name")).scalar() == worker_name(os.getpid())
            sock = socket.socket(fileno=os.dup(connection.connection.dbapi_connection.fileno()))
            with sock:
                assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
                assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 30
                assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT) == 60_000
    finally:
        storage.engine.dispose()


def test_a_mysql_connection_cut_without_a_word_fails_in_time_and_is_retried(mariadb_url):
    """MySQL drivers have no keepalives: without a read timeout a silent cut hangs a worker for good."""
    assert engine_kwargs(mariadb_url)["connect_args"] == MYSQL_LIVENESS
    relay = SilentRelay(make_url(mariadb_url).port)
    url = relay.url(mariadb_url) + "?read_timeout=3"  # the URL's setting wins over ours (120 s)
    engine = sqlalchemy.create_engine(url, **engine_kwargs(url))
    try:
        with engine.connect() as connection:
            assert connection.execute(sqlalchemy.text("SELECT 1")).scalar() == 1
            relay.cut()
            started = time.monotonic()
            try:
                connection.execute(sqlalchemy.text("SELECT 2"))
            except sqlalchemy.exc.OperationalError as error:
                failed = error
            else:
                raise AssertionError("a query on a silent connection succeeded")
        assert 2 < time.monotonic() - started < 30
        assert is_transient(failed), failed
    finally:
        engine.dispose()
        relay.close()


def test_connections_dropped_inside_report_heartbeat_and_final_write_are_retried(postgres_url, tmp_path):
    studies = tmp_path / "studies"
    write_tiny_study(studies, max_trials=1, max_epochs=3, heartbeat=1, grace=60)
    # Beats come only while the trial trains: the first validation batch blocks for 10 s, before the first
    # report, so the beat is dropped during it, then the report after it, then the final write.
    log = tmp_path / "worker.log"
    worker = start_worker(studies, postgres_url, "--n-trials", "1", env={"OPTIMIZE_TEST_SLOW_STEP": "val:10"}, log=log)
    try:
        wait_for(lambda: "injected slow val step" in log.read_text(), 480, "the first epoch", watching=(worker,))
        trial = running(postgres_url, min_step=0)[0]
        with holding(postgres_url, f"SELECT 1 FROM trials WHERE trial_id = {trial._trial_id} FOR NO KEY UPDATE"):
            drop_inside_call(postgres_url, worker.pid, "trial_heartbeats", "a beat")
            drop_inside_call(postgres_url, worker.pid, "trial_intermediate_values", "a report")
            # Training is over when the worker waits for the trial's row: Optuna is writing the final state.
            wait_for(lambda: terminate(postgres_url, [worker.pid], waiting=True) > 0, 120, "the final write")
        code, _, err = finish(worker, 120)
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGKILL)
    out = log.read_text()
    assert code == 0, out + err
    assert_no_traceback(out, err)
    retries = [line for line in err.splitlines() if "retrying in" in line]
    assert len(retries) >= 3, err
    assert any("recording the heartbeat failed" in line for line in retries), err
    assert any("reporting to the study failed" in line for line in retries), err
    assert any(line.startswith("WARNING") and "marking a trial" in line for line in retries), err
    assert "reachable again" in err
    stored = next(t for t in trials_of(postgres_url) if t.number == trial.number)
    assert stored.state in FINISHED
    assert stored.user_attrs["epochs_run"] == len(stored_history(stored)["epoch"]) == len(stored.intermediate_values)
    assert f"trial    0  {stored.state.name}" in out


def test_worker_gives_up_on_an_unreachable_database_and_its_trial_is_retried_clean(postgres_url, tmp_path):
    studies = tmp_path / "studies"
    write_tiny_study(studies, max_trials=3, max_epochs=2, heartbeat=1, grace=2)
    with_faults(studies, reconnect_timeout=3)
    without_enqueued(studies)
    database = make_url(postgres_url).database
    worker = start_worker(studies, postgres_url, "--n-trials", "1")
    try:
        wait_for(lambda: running(postgres_url, min_step=0), 480, "the first trial", watching=(worker,))
        trial = running(postgres_url, min_step=0)[0]
        with holding(postgres_url, f"SELECT 1 FROM trials WHERE trial_id = {trial._trial_id} FOR NO KEY UPDATE"):
            wait_for(lambda: backends(postgres_url, [worker.pid], waiting=True), 120, "the final write")
            with admin(POSTGRES_ADMIN) as connection:
                connection.execute(sqlalchemy.text(f"ALTER DATABASE {database} ALLOW_CONNECTIONS false"))
            terminate(postgres_url, [worker.pid])
        code, out, err = finish(worker, 60)
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGKILL)
        with admin(POSTGRES_ADMIN) as connection:
            connection.execute(sqlalchemy.text(f"ALTER DATABASE {database} ALLOW_CONNECTIONS true"))
    assert code == 75, out + err
    assert_no_traceback(out, err)
    errors = [line for line in err.splitlines() if not line.startswith("WARNING ") and not TENSORFLOW_LOG.match(line)]
    assert len(errors) == 1, err
    assert errors[0].startswith(f"optimize run: error: postgresql database '{database}' at 127.0.0.1:5432")
    assert "longer than [recovery] reconnect_timeout = 3 s" in errors[0] and "accepting connections" in errors[0]
    assert "retrying in" in err
    left = next(t for t in trials_of(postgres_url) if t.number == trial.number)
    assert left.state == TrialState.RUNNING and left.user_attrs["epochs_run"] == 2  # trained, result not recorded

    survivor = start_worker(studies, postgres_url, "--n-trials", "1")
    code, out, err = finish(survivor, 180)
    assert code == 0, out + err
    assert_no_traceback(out, err)
    assert f"trial {trial.number} had no heartbeat within the grace period" in err
    trials = {t.number: t for t in trials_of(postgres_url)}
    assert trials[trial.number].state == TrialState.FAIL
    assert trials[trial.number].user_attrs == left.user_attrs
    (retry,) = [t for t in trials.values() if t.system_attrs.get("failed_trial") == trial.number]
    assert retry.params == left.params and retry.state in FINISHED
    assert retry.system_attrs["retry_history"] == [trial.number]
    assert retry.user_attrs["retry_of"] == trial.number
    assert retry.user_attrs["worker"].endswith(f":{survivor.pid}")
    assert retry.user_attrs["epochs_run"] == len(stored_history(retry)["epoch"]) == len(retry.intermediate_values)
    if retry.state == TrialState.COMPLETE:
        assert "reason" not in retry.user_attrs
    assert not [t for t in trials.values() if t.state in (TrialState.RUNNING, TrialState.WAITING)]


def retried(trial: FrozenTrial) -> int | None:
    """The trial this one is a retry of: heartbeat-stale (the last in its retry history) or interrupted."""
    history = trial.system_attrs.get("retry_history")
    return history[-1] if history else trial.user_attrs.get("requeued_from")


def inside_slow_batch(log: Path) -> bool:
    """Whether the worker's last line is the injected slow batch's: it is in that batch's trial, unfinished
    (a finished trial prints its own line), and any signal now stops it before its last batch."""
    lines = log.read_text().splitlines()
    return bool(lines) and "injected slow train step" in lines[-1]


def snapshot(trial: FrozenTrial) -> tuple:
    """What must never change once a trial is finished."""
    return (
        trial.state,
        trial.values,
        trial.params,
        trial.user_attrs,
        trial.intermediate_values,
        trial.datetime_complete,
    )


def test_fault_injection_kills_workers_and_their_connections(postgres_url, tmp_path):
    """Three workers and two replacements under dropped connections, a SIGKILL and a double SIGTERM."""
    url = postgres_url
    studies = tmp_path / "studies"
    write_tiny_study(studies, max_trials=100, max_epochs=2, heartbeat=1, grace=3)
    # Worker b blocks 3 s in one batch of each trial, so the test can signal it inside a batch.
    b_log = tmp_path / "b.out"
    slow_batch = {"OPTIMIZE_TEST_SLOW_STEP": "train:3"}
    workers = {
        "a": start_worker(studies, url, "--n-trials", "3", "--seed", "0"),
        "b": start_worker(studies, url, "--n-trials", "3", "--seed", "1", env=slow_batch, log=b_log),
        "c": start_worker(studies, url, "--n-trials", "3", "--seed", "2"),
    }
    finished: dict[int, tuple] = {}

    def record_finished() -> None:
        for trial in trials_of(url):
            if trial.state in FINISHED:
                finished.setdefault(trial.number, snapshot(trial))

    def trial_of(name: str, first_epoch: bool = False) -> FrozenTrial | None:
        """The trial this worker is training (the objective names its worker when the trial starts)."""
        owner = f"{socket.gethostname()}:{workers[name].pid}"
        trials = [t for t in running(url, min_step=0) if t.user_attrs.get("worker") == owner]
        return next((t for t in trials if not first_epoch or t.last_step is None), None)

    try:
        # Two trials RUNNING, not yet two past their first epoch: under CI's load the three workers' later
        # epochs may never overlap before their 3 trials end (seen once, a timeout).
        wait_for(
            lambda: len(running(url, min_step=0)) >= 2, 480, "two workers training", watching=tuple(workers.values())
        )
        with holding(url, "LOCK TABLE trial_intermediate_values IN ACCESS EXCLUSIVE MODE"):
            wait_for(lambda: terminate(url, waiting=True) > 0, 60, "a worker to report")
            terminate(url)
        record_finished()

        killed = wait_for(lambda: trial_of("a", first_epoch=True), 120, "worker a in the first epoch of a trial")
        os.killpg(workers["a"].pid, signal.SIGKILL)
        workers["d"] = start_worker(studies, url, "--n-trials", "2", "--seed", "3")
        terminate(url)

        record_finished()
        wait_for(
            lambda: trial_of("b", first_epoch=True) and inside_slow_batch(b_log),
            120,
            "worker b inside the slow batch of a trial's first epoch",
        )
        signalled = datetime.datetime.now()
        workers["b"].send_signal(signal.SIGTERM)
        time.sleep(0.3)
        workers["b"].send_signal(signal.SIGTERM)  # a second signal within a second counts as one
        code, _, err = finish(workers["b"], 60)
        signalled_b = (code, b_log.read_text(), err)
        workers["e"] = start_worker(studies, url, "--n-trials", "2", "--seed", "4")
        for _ in range(3):
            time.sleep(2)
            terminate(url)
            record_finished()

        results = {name: finish(worker, 240) for name, worker in workers.items() if name != "b"}
        results["b"] = signalled_b
        leftover = [t for t in trials_of(url) if not t.state.is_finished()]
        if leftover:  # queued again after the last worker had started its last trial
            time.sleep(4)
            workers["f"] = start_worker(studies, url, "--n-trials", str(len(leftover)), "--seed", "5")
            results["f"] = finish(workers["f"], 240)
    finally:
        for worker in workers.values():
            if worker.poll() is None:
                os.killpg(worker.pid, signal.SIGKILL)

    assert results["a"][0] == -signal.SIGKILL
    assert results["b"][0] == 143 and "stopped at once" not in results["b"][1], results["b"]
    assert "interrupted: " in results["b"][1] and "handed back" in results["b"][1], results["b"]
    for name in set(results) - {"a", "b"}:
        assert results[name][0] == 0, results[name]
    for _, out, err in results.values():
        assert_no_traceback(out, err)
    assert any("retrying in" in err for _, _, err in results.values())

    trials = {t.number: t for t in trials_of(url)}
    assert not [t.number for t in trials.values() if not t.state.is_finished()]
    for number, before in finished.items():
        assert snapshot(trials[number]) == before, number
    failed = {t.number: t for t in trials.values() if t.state == TrialState.FAIL}
    interrupted = [t for t in failed.values() if t.user_attrs.get("reason") == "interrupted"]
    assert len(interrupted) == 1 and sorted(failed) == sorted([killed.number, interrupted[0].number])
    assert interrupted[0].params and interrupted[0].last_step in (None, 1)  # stopped within its trial
    b = f"{socket.gethostname()}:{workers['b'].pid}"
    assert not [t for t in trials.values() if t.user_attrs.get("worker") == b and t.datetime_start > signalled]
    # Every killed trial runs again exactly once with its params; a retry killed in turn is in `failed` too.
    for number, trial in failed.items():
        (retry,) = [t for t in trials.values() if retried(t) == number]
        assert retry.params == trial.params or retry.params == trial.system_attrs.get("fixed_params"), number
        if retry.state in FINISHED:
            assert retry.user_attrs["retry_of"] == retry.system_attrs.get("failed_trial", number)
            assert retry.user_attrs["epochs_run"] == len(retry.intermediate_values)  # its own record
            assert retry.state == TrialState.PRUNED or "reason" not in retry.user_attrs


def test_writes_committed_before_the_connection_dropped_are_not_repeated(postgres_url, tmp_path):
    """A new trial, a claimed queued trial and a final result that were committed but whose answer was lost."""
    studies = tmp_path / "studies"
    write_tiny_study(studies, max_trials=10, max_epochs=2, heartbeat=1, grace=2)
    cutter = CommitCutter(
        rb"INSERT INTO trials \(",  # the first queued trial of the config's [[enqueue]]
        rb"UPDATE trials SET state=[^,]*, datetime_start",  # a worker claiming a queued trial
        rb"INSERT INTO trial_values",  # the final write of a trial's result
    )
    try:
        code, out, err = finish(start_worker(studies, cutter.url(postgres_url), "--n-trials", "3"), 240)
    finally:
        cutter.close()
    assert cutter.cut == 3
    assert code == 0, out + err
    assert_no_traceback(out, err)
    twin, claimed, first, *later = trials_of(postgres_url)
    # The claimed trial's retry is the one after `first` or the next: whether it goes stale before the worker
    # asks the sampler again depends on how fast `first` trains.
    (retry,) = [trial for trial in later if trial.system_attrs.get("failed_trial") == claimed.number]
    (fresh,) = [trial for trial in later if trial is not retry]
    # The queued trial created twice: the copy is FAIL, with the reason; the other one ran, once.
    assert twin.state == TrialState.FAIL and "created twice" in read_record(twin).reason_text
    assert f"trial {twin.number} was created twice" in err
    # The queued trial claimed while the connection dropped: nobody ran it, so it went stale and ran again.
    assert claimed.state == TrialState.FAIL and "claiming a queued trial failed" in err
    assert retry.params == claimed.system_attrs["fixed_params"] == twin.system_attrs["fixed_params"]
    # The result written, then lost on the way back: stored once, no crash.
    assert first.state in FINISHED and first.params == {
        "architecture": "attention_unet",
        "loss": "combined",
        "learning_rate": 1e-5,
    }
    assert re.search(r"marking a trial (COMPLETE|PRUNED) failed", err)
    assert [retry.state in FINISHED, fresh.state in FINISHED] == [True, True]
    assert out.count(f"trial    {first.number}  ") == 1

"""Where studies live: the storage URL a command uses, and an Optuna storage opened for many workers.

Any SQLAlchemy URL works (PostgreSQL and MySQL/MariaDB for many nodes); with no URL the study lives
in SQLite under `studies/`; a path ending in `.log` selects Optuna's journal file.
"""

from __future__ import annotations

import itertools
import logging
import os
import random
import socket
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import closing
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar
from urllib.parse import quote

import optuna
import sqlalchemy.exc
from optuna.storages import RDBStorage
from optuna.storages.journal import JournalFileBackend, JournalStorage
from sqlalchemy.engine import URL, make_url

from optimize.errors import DatabaseUnreachable, StorageError
from optimize.folders import file_in_the_way, studies_dir
from optimize.storage.retries import RetryStaleTrial

if TYPE_CHECKING:
    from optimize.search.config import RecoveryConfig

STORAGE_ENV = "OPTIMIZE_STORAGE"
SQLITE_BUSY_SECONDS = 120
QUERY_SECRETS = ("password", "passwd", "sslpassword")
"""Query parameters of a storage URL that hold a secret: hidden wherever the URL is printed or stored."""
SQLITE_CHECKPOINT_SECONDS = 10
RETRY_DELAYS = (0.5, 1, 2, 4, 8, 16)
"""Seconds between attempts while the database is unreachable; the last one repeats."""
RETRY_JITTER = 0.2
"""Each delay varies by this fraction, so that workers cut off together do not reconnect in step."""
TRANSIENT_ERRORS = (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError, sqlalchemy.exc.PendingRollbackError)
"""Lost, refused or timed-out connections (and deadlocks), or a session that used a connection lost in the
same transaction (Optuna re-runs a failed query once on the same session): worth retrying; bad data and
bugs are not."""
POSTGRES_LIVENESS = {
    "connect_timeout": 10,
    "keepalives": 1,
    "keepalives_idle": 30,
    "keepalives_interval": 10,
    "keepalives_count": 3,
    "tcp_user_timeout": 60_000,
}
"""libpq settings (seconds; milliseconds for `tcp_user_timeout`): keepalives stop a firewall from dropping an
idle connection, and a connection cut without a word (a firewall, a dead node) fails within about a minute,
to be retried, instead of hanging until the operating system gives up on it."""
MYSQL_LIVENESS = {"connect_timeout": 10, "read_timeout": 120, "write_timeout": 60}
"""PyMySQL and mysqlclient settings (seconds), which have no keepalives: a connection cut without a word fails
once an answer is 2 minutes late (InnoDB gives up a lock wait after 50 s) or a write 1 minute, to be retried,
instead of hanging for good."""
MYSQL_LIVENESS_DRIVERS = ("pymysql", "mysqldb")
SCHEMA_RACE_ATTEMPTS = 8
SCHEMA_RACE_MARKERS = ("duplicate", "already exists", "deadlock", "unique constraint")
URL_EXAMPLES = (
    "postgresql+psycopg://user:password@host:5432/db, mysql+pymysql://user@host/db or sqlite:///path/study.db"
)
READ_ONLY_SESSION = {
    "postgresql": ("options", "-c default_transaction_read_only=on"),
    "mysql": ("init_command", "SET SESSION TRANSACTION READ ONLY"),
}
"""The driver argument that makes every transaction of a connection read-only."""

log = logging.getLogger(__name__)
T = TypeVar("T")


def resolve_url(study_name: str, storage: str | None = None) -> str:
    """`--storage`, else `$OPTIMIZE_STORAGE`, else SQLite at `studies/NAME.db`."""
    return storage or os.environ.get(STORAGE_ENV) or default_url(study_name)


def default_url(study_name: str) -> str:
    """Where a study lives when neither `--storage` nor `$OPTIMIZE_STORAGE` says: SQLite at `studies/NAME.db`."""
    return f"sqlite:///{studies_dir() / f'{study_name}.db'}"


def storage_kind(url: str) -> str:
    """'sqlite', 'postgresql', 'mysql', 'journal' or the URL's dialect."""
    if is_journal(url):
        return "journal"
    backend = parse_url(url).get_backend_name()
    return "mysql" if backend == "mariadb" else backend


def redact(url: str) -> str:
    """The URL as it may be printed or stored: never with its password (even when it does not parse)."""
    if is_journal(url):
        return url
    try:
        parsed = make_url(url)
    except (sqlalchemy.exc.ArgumentError, ValueError):
        return _hide_password(url)
    secret = {key: "***" for key in parsed.query if key.lower() in QUERY_SECRETS}  # ?password=... as libpq takes it
    return parsed.update_query_dict(secret).render_as_string(hide_password=True).replace("%2A%2A%2A", "***")


def _hide_password(url: str) -> str:
    """`url` with everything between the user name and the last '@' hidden, for URLs SQLAlchemy cannot parse."""
    credentials, at, rest = url.rpartition("@")
    scheme, separator, user_info = credentials.rpartition("://")
    if not at or ":" not in user_info:
        return url
    return f"{scheme}{separator}{user_info.split(':', 1)[0]}:***@{rest}"


def parse_url(url: str) -> URL:
    """The SQLAlchemy URL, or a `StorageError` naming it (password hidden) and what was expected."""
    try:
        return make_url(url)
    except sqlalchemy.exc.ArgumentError:
        problem = "is not a database URL"
    except ValueError:
        problem = "has a port that is not a number"
    raise StorageError(
        f"storage URL {redact(url)!r} {problem}; expected e.g. {URL_EXAMPLES}, or a journal file path ending in .log"
    )


def check_url(url: str) -> None:
    """Refuse, before anything slow starts, a storage URL that cannot work.

    A URL that does not parse, an unknown database kind, a driver that is not installed, or an SQLite
    or journal file whose folder cannot exist (a regular file in its path) is a one-line `StorageError`.
    """
    if is_journal(url):
        _check_folder(Path(url).parent, url)
        return
    parsed = parse_url(url)
    try:
        dialect = parsed.get_dialect()
    except sqlalchemy.exc.NoSuchModuleError:
        raise StorageError(
            f"storage URL {redact(url)!r}: unknown database kind {parsed.drivername!r}; expected e.g. {URL_EXAMPLES}"
        ) from None
    try:
        dialect.import_dbapi()
    except ImportError as error:
        raise StorageError(
            f"storage URL {redact(url)!r}: the driver of {parsed.drivername!r} is not installed ({error}); "
            f"expected e.g. {URL_EXAMPLES}"
        ) from None
    if parsed.get_backend_name() == "sqlite" and parsed.database in (None, "", ":memory:"):
        raise StorageError(
            f"storage URL {url!r} is an in-memory SQLite database, gone when the command ends; expected "
            "a file, sqlite:///PATH/TO/FILE.db"
        )
    if parsed.get_backend_name() == "sqlite":
        _check_folder(Path(parsed.database).parent, url)


def is_journal(url: str) -> bool:
    return url.endswith(".log") and "://" not in url


def open_storage(
    url: str, recovery: RecoveryConfig | None = None, *, read_only: bool = False
) -> optuna.storages.BaseStorage:
    """An Optuna storage for `url`, tuned for many concurrent workers.

    On database storage, `recovery` turns on heartbeats so that trials of a killed worker become
    FAIL after the grace period and are re-queued with the same parameters.

    With `read_only` (status, export-best, report, dashboard) the study database must exist and is never
    written: no tables are created, and SQLite is opened in its read-only mode, so the file stays
    byte-identical and a read-only copy works. An unusable URL or path is a one-line `StorageError`.
    """
    check_url(url)
    if read_only:
        _require_existing_file(url)
    if is_journal(url):
        if not read_only:
            _make_folder(Path(url).parent, url)
        try:
            _check_journal_start(url)
            return JournalStorage(JournalFileBackend(url))
        except OSError as error:
            raise StorageError(f"cannot open {describe(url)}: {error.strerror}") from None
        except ValueError as error:  # a line that is not JSON text: an SQLite file or a job's log named .log
            raise _not_a_journal(url, f"{type(error).__name__}: {error}") from None
    parsed = parse_url(url)
    if read_only:
        return _open_read_only(url, parsed)
    heartbeat = {}
    if recovery is not None:
        heartbeat = dict(
            heartbeat_interval=recovery.heartbeat_interval,
            grace_period=recovery.grace_period,
            heartbeat_stale_trial_callback=RetryStaleTrial(max_retry=recovery.max_retry),
        )
    try:
        if parsed.get_backend_name() != "sqlite":
            return create_rdb_storage(url, heartbeat)
        _prepare_sqlite(parsed.database, url)
        storage = create_rdb_storage(url, heartbeat)
        lock_sqlite_transactions_at_begin(storage.engine)
        return storage
    except (sqlalchemy.exc.SQLAlchemyError, ImportError, sqlite3.Error) as error:
        raise StorageError(f"cannot open study storage {describe(url)}: {reason(error)}") from None


def storage_file(url: str) -> Path | None:
    """The file an SQLite or journal storage lives in; None for a database server or an in-memory SQLite."""
    if is_journal(url):
        return Path(url).expanduser().resolve()
    parsed = parse_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return None
    return Path(parsed.database).expanduser().resolve()


def checkpoint_sqlite(url: str) -> None:
    """Copy an SQLite study's write-ahead log into its file once a command's worker processes have ended, so that
    a copy of the `.db` file alone holds the whole study. SQLite does this when its last connection closes, but
    a process that exits without closing its connections leaves the log behind. Nothing for other storages; a
    database still in use is checkpointed as far as it can be (within `SQLITE_CHECKPOINT_SECONDS`)."""
    database = storage_file(url)
    if is_journal(url) or database is None or not Path(f"{database}-wal").exists():
        return
    _run_sqlite(str(database), "PRAGMA wal_checkpoint(TRUNCATE)", SQLITE_CHECKPOINT_SECONDS, "checkpoint")


def _check_journal_start(url: str) -> None:
    """StorageError for an existing, non-empty file whose first line is not a JSON object, as every journal
    line is: Optuna skips a bad last line (one being written), so a one-line job log read as an empty journal."""
    path = Path(url)
    if not path.is_file():
        return
    with path.open("rb") as file:
        first = file.readline(1 << 16).lstrip()
    if first and not first.startswith(b"{"):
        raise _not_a_journal(url, "its first line is not a JSON object")


def _not_a_journal(url: str, why: str) -> StorageError:
    return StorageError(
        f"{url} is not an Optuna journal file ({why}); expected the .log file that `optimize run --storage "
        "FILE.log` writes"
    )


def _open_read_only(url: str, parsed: URL) -> RDBStorage:
    """`RDBStorage` that reads an existing study database and cannot write it."""
    sqlite_file = parsed.database if parsed.get_backend_name() == "sqlite" else None
    cleans_up = bool(sqlite_file) and _may_write_next_to(sqlite_file)
    try:
        storage = RDBStorage(url, engine_kwargs=engine_kwargs(url, read_only=True), skip_table_creation=True)
    except (sqlalchemy.exc.SQLAlchemyError, optuna.exceptions.StorageInternalError, sqlite3.Error) as error:
        driver_error = next((cause for cause in _causes(error) if hasattr(cause, "orig")), error)
        if "version_info" in reason(driver_error):
            raise StorageError(
                f"{describe(url)} holds no Optuna studies; run `optimize run` first or pass --storage"
            ) from None
        raise StorageError(f"cannot open study storage {describe(url)}: {reason(driver_error)}") from None
    if cleans_up:
        weakref.finalize(storage, _remove_reader_files, storage.engine, str(Path(sqlite_file).absolute()))
    return storage


def create_rdb_storage(url: str, heartbeat: dict) -> RDBStorage:
    """`RDBStorage`, retried when workers starting at the same instant race to create the schema, or when
    the server drops the connection while it is opened (a restart); a refused connection fails at once."""
    for attempt in range(SCHEMA_RACE_ATTEMPTS):
        try:
            return RDBStorage(url, engine_kwargs=engine_kwargs(url), **heartbeat)
        except (sqlalchemy.exc.SQLAlchemyError, optuna.exceptions.StorageInternalError) as error:
            racing = any(marker in reason(error).lower() for marker in SCHEMA_RACE_MARKERS)
            if attempt + 1 < SCHEMA_RACE_ATTEMPTS and (racing or was_dropped(error)):
                time.sleep(random.uniform(0.2, 1.0))
                continue
            if isinstance(error.__cause__, sqlalchemy.exc.SQLAlchemyError):
                raise error.__cause__ from None  # Optuna's wrapper says nothing the cause does not
            raise
    raise AssertionError("unreachable")


def lock_sqlite_transactions_at_begin(engine: sqlalchemy.engine.Engine) -> None:
    """Make every transaction on this SQLite file take the write lock when it begins (`BEGIN IMMEDIATE`).

    Python's sqlite3 begins a transaction only at its first write, so Optuna's read-then-write steps are
    not atomic between processes: two workers both read a queued trial as WAITING and both run it (4
    workers took 60 queued trials over 100 times, `tests/test_storage.py`). SQLite lets one writer at a
    time anyway; the busy timeout makes the others wait their turn. Connections opened before this are
    closed, so every later one follows it (SQLAlchemy's recipe for pysqlite transactions).
    """

    @sqlalchemy.event.listens_for(engine, "connect")
    def leave_transactions_to_sqlalchemy(dbapi_connection, connection_record) -> None:
        dbapi_connection.isolation_level = None

    @sqlalchemy.event.listens_for(engine, "begin")
    def begin_with_the_write_lock(connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    engine.dispose()


def was_dropped(error: BaseException) -> bool:
    """Whether the error is an established connection the server closed (not a connection it refused)."""
    while error is not None:
        if getattr(error, "connection_invalidated", False):
            return True
        error = error.__cause__
    return False


def engine_kwargs(url: str, *, read_only: bool = False) -> dict:
    """SQLAlchemy engine settings: a small, self-healing pool per worker; a long busy wait on SQLite.

    `read_only` SQLite connections use SQLite's read-only mode (`mode=ro`). A file this process could not
    clean up after (it or its folder not writable) and that no process has open (no `-shm` file) is read
    as `immutable`, which needs no `-wal`/`-shm` files at all. On PostgreSQL and MySQL, `read_only`
    sessions are read-only transactions (`READ_ONLY_SESSION`).

    On PostgreSQL each connection is named after its process (`optimize HOST:PID` in `pg_stat_activity`),
    so an administrator can tell whose connection is whose, and checked by `POSTGRES_LIVENESS`; on MySQL
    checked by `MYSQL_LIVENESS`. Settings in the URL's query win.
    """
    if storage_kind(url) == "sqlite":
        database = make_url(url).database
        if not read_only or database in (None, "", ":memory:"):
            return {"connect_args": {"timeout": SQLITE_BUSY_SECONDS}}
        options = "mode=ro" + ("&immutable=1" if _sqlite_snapshot_only(database) else "")
        uri = f"file:{quote(str(Path(database).absolute()))}?{options}"
        connect = partial(sqlite3.connect, uri, uri=True, timeout=SQLITE_BUSY_SECONDS, check_same_thread=False)
        return {"creator": connect}
    kwargs: dict = {"pool_pre_ping": True, "pool_size": 2, "max_overflow": 2, "pool_recycle": 1800}
    if storage_kind(url) == "postgresql":
        ours = {"application_name": f"optimize {socket.gethostname()}:{os.getpid()}"[:63], **POSTGRES_LIVENESS}
        kwargs["connect_args"] = {key: value for key, value in ours.items() if key not in make_url(url).query}
    elif storage_kind(url) == "mysql" and make_url(url).get_driver_name() in MYSQL_LIVENESS_DRIVERS:
        kwargs["connect_args"] = {key: value for key, value in MYSQL_LIVENESS.items() if key not in make_url(url).query}
    if read_only:
        setting = READ_ONLY_SESSION.get(storage_kind(url))
        if setting and setting[0] not in make_url(url).query:
            kwargs.setdefault("connect_args", {}).update([setting])
    return kwargs


def describe(url: str) -> str:
    """Host, port and database of a URL, for error messages (never the password)."""
    if is_journal(url):
        return f"journal file {url}"
    try:
        parsed = make_url(url)
    except (sqlalchemy.exc.ArgumentError, ValueError):
        return f"storage URL {redact(url)!r}"
    if parsed.get_backend_name() == "sqlite":
        return f"SQLite file {parsed.database}"
    port = parsed.port or {"postgresql": 5432, "mysql": 3306}.get(storage_kind(url), "?")
    return f"{storage_kind(url)} database {parsed.database!r} at {parsed.host}:{port} as user {parsed.username!r}"


def reason(error: BaseException) -> str:
    """The first line of the driver's message, without SQLAlchemy's or Optuna's boilerplate."""
    while getattr(error, "orig", None) is None and error.__cause__ is not None:
        error = error.__cause__
    original = getattr(error, "orig", None) or error
    text = str(original).strip().splitlines()
    return text[0] if text else type(original).__name__


def is_transient(error: BaseException) -> bool:
    """Whether a storage error is a dropped or refused connection, worth retrying on a new one.

    Optuna re-raises every SQLAlchemy error as `StorageInternalError`, so the chain of causes is searched.
    """
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, TRANSIENT_ERRORS) or getattr(error, "connection_invalidated", False):
            return True
        error = error.__cause__
    return False


def with_retry(action: Callable[[], T], what: str) -> T:
    """Run one storage call of a short command, retrying for about half a minute while the connection is down."""
    return Reconnector(sum(RETRY_DELAYS)).call(action, what)


class Reconnector:
    """Retries storage calls with backoff while the database is unreachable, and gives up after `limit` seconds.

    A worker has one, shared by its trial loop and its heartbeat thread, so that both measure the same
    outage: it starts at the first failed call and ends at the first call that succeeds. Once it has
    given up, every later call fails at once with the same `DatabaseUnreachable`.
    """

    def __init__(self, limit: float, where: str = "the study database", setting: str | None = None) -> None:
        self.limit = limit
        self.where = where
        self.setting = setting
        self.unreachable: DatabaseUnreachable | None = None
        self._down_since: float | None = None
        self._lock = threading.Lock()

    def call(self, action: Callable[[], T], what: str, *, patience: float | None = None) -> T:
        """`action()`, retried on transient errors; one log line per failed attempt.

        With `patience`, a call that its caller makes again anyway (the heartbeat) re-raises the
        transient error once it has waited that long, instead of waiting for the whole outage.
        """
        started = time.monotonic()
        for attempt in itertools.count():
            if self.unreachable is not None:
                raise DatabaseUnreachable(str(self.unreachable))
            try:
                result = action()
            except Exception as error:
                if not is_transient(error):
                    raise
                down = self._failed()
                if down >= self.limit:
                    raise self._give_up(down, error) from None
                delay = RETRY_DELAYS[min(attempt, len(RETRY_DELAYS) - 1)] * random.uniform(
                    1 - RETRY_JITTER, 1 + RETRY_JITTER
                )
                delay = min(delay, self.limit - down)
                if patience is not None and time.monotonic() - started + delay > patience:
                    raise
                log.warning("%s failed (%s); retrying in %.1f s", what, reason(error), delay)
                time.sleep(delay)
                continue
            self._succeeded(what)
            return result
        raise AssertionError("unreachable")

    def _failed(self) -> float:
        """Seconds since the outage began (now, if this is its first failure)."""
        with self._lock:
            now = time.monotonic()
            if self._down_since is None:
                self._down_since = now
            return now - self._down_since

    def _succeeded(self, what: str) -> None:
        with self._lock:
            if self._down_since is None:
                return
            down, self._down_since = time.monotonic() - self._down_since, None
        log.warning("%s succeeded: database reachable again after %.1f s", what, down)

    def _give_up(self, down: float, error: BaseException) -> DatabaseUnreachable:
        limit = f"{self.setting} = {self.limit:g} s" if self.setting else f"{self.limit:g} s"
        self.unreachable = DatabaseUnreachable(
            f"{self.where} unreachable for {down:.0f} s, longer than {limit} ({reason(error)}); giving up"
        )
        return self.unreachable


def _require_existing_file(url: str) -> None:
    path = url if is_journal(url) else (make_url(url).database if storage_kind(url) == "sqlite" else None)
    if not path or path == ":memory:":
        return
    if not Path(path).exists():
        raise StorageError(f"no study database at {path}; run `optimize run` first or pass --storage")
    if not Path(path).is_file():
        raise StorageError(f"{describe(url)} is a folder, not a study database file")


def _prepare_sqlite(database: str | None, url: str) -> None:
    """Create the folder and switch the file to WAL so readers (the dashboard) never block writers."""
    if not database or database == ":memory:":
        return
    _make_folder(Path(database).parent, url)
    with closing(sqlite3.connect(database, timeout=SQLITE_BUSY_SECONDS)) as connection:
        connection.execute("PRAGMA journal_mode=WAL")


def _causes(error: BaseException | None) -> Iterator[BaseException]:
    """`error` and the chain of errors it was raised from (Optuna wraps the driver's error)."""
    while error is not None:
        yield error
        error = error.__cause__


def _check_folder(folder: Path, url: str) -> None:
    """A `StorageError` when a regular file stands where the storage file's folder (or one above) must be."""
    blocker = file_in_the_way(folder)
    if blocker is not None:
        raise StorageError(f"cannot create {describe(url)}: {blocker} is a file, not a folder")


def _make_folder(folder: Path, url: str) -> None:
    _check_folder(folder, url)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise StorageError(f"cannot create folder {folder} for {describe(url)}: {error.strerror}") from None


def _sqlite_snapshot_only(database: str) -> bool:
    """Whether a reader takes the file as an unchanging snapshot (SQLite's `immutable`).

    So it is when the reader could not remove the `-wal`/`-shm` files that SQLite's read-only mode
    makes, and no process has the file open (one that has keeps a `-shm` file next to it).
    """
    return not _may_write_next_to(database) and not Path(f"{database}-shm").exists()


def _may_write_next_to(database: str) -> bool:
    return os.access(database, os.W_OK) and os.access(Path(database).absolute().parent, os.W_OK)


def _remove_reader_files(engine: sqlalchemy.engine.Engine, database: str) -> None:
    """Remove the empty `-wal` and `-shm` files that read-only connections make and cannot remove.

    Done as SQLite does it: the last connection to close, when it may write, deletes them (so nothing
    happens while any other process has the file open). A `-wal` file with content, a writer's or one a
    crash left, is never touched: closing would copy it into the file.
    """
    engine.dispose()
    wal = Path(f"{database}-wal")
    if not wal.exists() or wal.stat().st_size > 0:
        return
    _run_sqlite(database, "SELECT count(*) FROM sqlite_master", SQLITE_BUSY_SECONDS, "remove the reader's files of")


def _run_sqlite(database: str, statement: str, timeout: float, what: str) -> None:
    """Run one statement on its own connection to `database`, which then closes: a chore SQLite does on a
    connection's close. A failure is logged (at debug level) and left: the chore can wait for the next one."""
    try:
        with closing(sqlite3.connect(database, timeout=timeout)) as connection:
            connection.execute(statement).fetchone()
    except sqlite3.Error as error:
        log.debug("could not %s %s: %s", what, database, error)

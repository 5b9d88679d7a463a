"""Where studies live: the storage URL a command uses, and an Optuna storage opened for many workers.

Any SQLAlchemy URL works (PostgreSQL and MySQL/MariaDB for many nodes); with no URL the study lives
in SQLite under `studies/`; a path ending in `.log` selects Optuna's journal file.
"""

from __future__ import annotations

import logging
import os
import random
import sqlite3
import time
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import TypeVar

import optuna
import sqlalchemy.exc
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.storages.journal import JournalFileBackend, JournalStorage
from sqlalchemy.engine import make_url

from .config import FaultConfig, studies_dir
from .errors import StorageError

STORAGE_ENV = "OPTIMIZE_STORAGE"
SQLITE_BUSY_SECONDS = 120
RETRY_DELAYS = (0.5, 1, 2, 4, 8, 16)
SCHEMA_RACE_ATTEMPTS = 8
SCHEMA_RACE_MARKERS = ("duplicate", "already exists", "deadlock", "unique constraint")

log = logging.getLogger(__name__)
T = TypeVar("T")


def resolve_url(study_name: str, storage: str | None = None) -> str:
    """`--storage`, else `$OPTIMIZE_STORAGE`, else SQLite at `studies/NAME.db`."""
    url = storage or os.environ.get(STORAGE_ENV)
    if url:
        return url
    return f"sqlite:///{studies_dir() / f'{study_name}.db'}"


def storage_kind(url: str) -> str:
    """'sqlite', 'postgresql', 'mysql', 'journal' or the URL's dialect."""
    if is_journal(url):
        return "journal"
    backend = make_url(url).get_backend_name()
    return "mysql" if backend == "mariadb" else backend


def redact(url: str) -> str:
    """The URL as it may be printed or stored: never with its password."""
    if is_journal(url):
        return url
    try:
        return make_url(url).render_as_string(hide_password=True)
    except sqlalchemy.exc.ArgumentError:
        return "<unparsable storage URL>"


def is_journal(url: str) -> bool:
    return url.endswith(".log") and "://" not in url


def open_storage(url: str, faults: FaultConfig | None = None, *, create: bool = True) -> optuna.storages.BaseStorage:
    """An Optuna storage for `url`, tuned for many concurrent workers.

    On database storage, `faults` turns on heartbeats so that trials of a killed worker become
    FAIL after the grace period and are re-queued with the same parameters. With `create=False`
    a missing SQLite or journal file is an error instead of a new, empty study database.
    """
    if not create:
        _require_existing_file(url)
    if is_journal(url):
        Path(url).parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(url))
    try:
        parsed = make_url(url)
    except sqlalchemy.exc.ArgumentError:
        raise StorageError(f"storage URL {url!r} is not a SQLAlchemy URL (e.g. sqlite:///x.db)") from None
    heartbeat = {}
    if faults is not None:
        heartbeat = dict(
            heartbeat_interval=faults.heartbeat_interval,
            grace_period=faults.grace_period,
            heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=faults.max_retry),
        )
    try:
        if parsed.get_backend_name() == "sqlite":
            _prepare_sqlite(parsed.database)
        return create_rdb_storage(url, heartbeat)
    except (sqlalchemy.exc.SQLAlchemyError, ImportError, sqlite3.Error) as error:
        raise StorageError(f"cannot open study storage {describe(url)}: {reason(error)}") from None


def create_rdb_storage(url: str, heartbeat: dict) -> RDBStorage:
    """`RDBStorage`, retried when workers starting at the same instant race to create the schema."""
    for attempt in range(SCHEMA_RACE_ATTEMPTS):
        try:
            return RDBStorage(url, engine_kwargs=engine_kwargs(url), **heartbeat)
        except sqlalchemy.exc.SQLAlchemyError as error:
            text = reason(error).lower()
            if attempt + 1 == SCHEMA_RACE_ATTEMPTS or not any(marker in text for marker in SCHEMA_RACE_MARKERS):
                raise
            time.sleep(random.uniform(0.2, 1.0))
    raise AssertionError("unreachable")


def engine_kwargs(url: str) -> dict:
    """SQLAlchemy engine settings: a small, self-healing pool per worker; a long busy wait on SQLite."""
    if storage_kind(url) == "sqlite":
        return {"connect_args": {"timeout": SQLITE_BUSY_SECONDS}}
    return {"pool_pre_ping": True, "pool_size": 2, "max_overflow": 2, "pool_recycle": 1800}


def describe(url: str) -> str:
    """Host, port and database of a URL, for error messages (never the password)."""
    if is_journal(url):
        return f"journal file {url}"
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return f"SQLite file {parsed.database}"
    port = parsed.port or {"postgresql": 5432, "mysql": 3306}.get(storage_kind(url), "?")
    return f"{storage_kind(url)} database {parsed.database!r} at {parsed.host}:{port} as user {parsed.username!r}"


def reason(error: BaseException) -> str:
    """The first line of the driver's message, without SQLAlchemy's boilerplate."""
    original = getattr(error, "orig", None) or error
    text = str(original).strip().splitlines()
    return text[0] if text else type(original).__name__


def with_retry(action: Callable[[], T], what: str) -> T:
    """Run a storage call, retrying with backoff when the database connection drops."""
    for delay in (*RETRY_DELAYS, None):
        try:
            return action()
        except sqlalchemy.exc.OperationalError as error:
            if delay is None:
                raise
            log.warning("%s failed (%s); retrying in %.1f s", what, reason(error), delay)
            time.sleep(delay)
    raise AssertionError("unreachable")


def _require_existing_file(url: str) -> None:
    path = url if is_journal(url) else (make_url(url).database if storage_kind(url) == "sqlite" else None)
    if path and path != ":memory:" and not Path(path).exists():
        raise StorageError(f"no study database at {path}; run `optimize run` first or pass --storage")


def _prepare_sqlite(database: str | None) -> None:
    """Create the folder and switch the file to WAL so readers (the dashboard) never block writers."""
    if not database or database == ":memory:":
        return
    Path(database).parent.mkdir(parents=True, exist_ok=True)
    with closing(sqlite3.connect(database, timeout=SQLITE_BUSY_SECONDS)) as connection:
        connection.execute("PRAGMA journal_mode=WAL")

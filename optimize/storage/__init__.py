"""Where studies are stored: storage URLs and paths, opening them, and riding out a dropped database.

`database` resolves `--storage` (SQLAlchemy URL, journal file or the default SQLite file under
`studies/`), checks it before any work, and opens it read-only or for writing; `resilient` wraps a
worker's storage so that a restart or failover of the database does not end its trial; `retries`
runs a trial again whose worker died (heartbeat) or was stopped by a signal.
"""

from optimize.storage.database import (
    Reconnector,
    check_url,
    checkpoint_sqlite,
    default_url,
    describe,
    engine_kwargs,
    is_journal,
    is_transient,
    open_storage,
    parse_url,
    reason,
    redact,
    resolve_url,
    storage_file,
    storage_kind,
    with_retry,
)
from optimize.storage.retries import RetryStaleTrial, requeue

__all__ = [
    "Reconnector",
    "RetryStaleTrial",
    "check_url",
    "checkpoint_sqlite",
    "default_url",
    "describe",
    "engine_kwargs",
    "is_journal",
    "is_transient",
    "open_storage",
    "parse_url",
    "reason",
    "requeue",
    "redact",
    "resolve_url",
    "storage_file",
    "storage_kind",
    "with_retry",
]

"""Storage on the real servers: URLs, clear connection errors, racing joins, SQLite under load."""

from __future__ import annotations

import multiprocessing
import re

import optuna
import pytest
from optuna.trial import TrialState

from optimize.errors import StorageError
from optimize.search.config import RecoveryConfig
from optimize.storage import describe, open_storage, redact, resolve_url, storage_kind
from tests.conftest import run_cli


def test_url_resolution_order(monkeypatch, tmp_path):
    monkeypatch.setenv("OPTIMIZE_STUDIES_DIR", str(tmp_path))
    monkeypatch.delenv("OPTIMIZE_STORAGE", raising=False)
    assert resolve_url("demo") == f"sqlite:///{tmp_path / 'demo.db'}"
    monkeypatch.setenv("OPTIMIZE_STORAGE", "postgresql://u@h/db")
    assert resolve_url("demo") == "postgresql://u@h/db"
    assert resolve_url("demo", "mysql+pymysql://u@h/db") == "mysql+pymysql://u@h/db"


def test_kinds_and_redaction():
    url = "postgresql+psycopg2://alice:s3cret@db.example:6543/studies"
    assert storage_kind(url) == "postgresql"
    assert storage_kind("mysql+pymysql://a@b/c") == "mysql"
    assert storage_kind("/shared/study.log") == "journal"
    assert "s3cret" not in redact(url) and "***" in redact(url)
    in_query = "postgresql+psycopg://alice@db.example/studies?password=s3cret&sslmode=require"  # libpq's way
    assert redact(in_query) == "postgresql+psycopg://alice@db.example/studies?password=***&sslmode=require"
    assert describe(url) == "postgresql database 'studies' at db.example:6543 as user 'alice'"


@pytest.mark.parametrize(
    "url, expected",
    [
        ("postgresql+psycopg://postgres@127.0.0.1:1/test", r"postgresql database 'test' at 127.0.0.1:1"),
        ("postgresql+psycopg2://postgres@127.0.0.1:5432/no_such_db", r"'no_such_db' at 127.0.0.1:5432.*no_such_db"),
        ("mysql+pymysql://root:wrong-pass@127.0.0.1:3306/test", r"mysql database 'test' at 127.0.0.1:3306.*denied"),
    ],
)
def test_unreachable_or_refused_database_is_one_clear_line(url, expected):
    with pytest.raises(StorageError, match=expected) as error:
        open_storage(url)
    assert "wrong-pass" not in str(error.value) and "\n" not in str(error.value)
    assert error.value.exit_code == 2


def test_cli_exit_code_2_without_password(studies):
    result = run_cli("status", "--study", "tiny", "--storage", "mysql+pymysql://root:hunter2@127.0.0.1:3306/test")
    assert result.returncode == 2
    assert "hunter2" not in result.stderr and "Traceback" not in result.stderr
    assert re.search(r"127.0.0.1:3306", result.stderr)


def join_at_once(url: str, barrier, rank: int) -> None:
    """One process: wait for the others, then create-or-join the study and run one trial."""
    from optimize.search.study import open_study
    from tests.helpers import racing_config

    barrier.wait()
    study = open_study(racing_config(), open_storage(url, RecoveryConfig(heartbeat_interval=5)), rank=rank)
    study.optimize(lambda trial: trial.suggest_float("x", 0, 1), n_trials=1)


def test_four_processes_create_and_join_at_the_same_instant(server_url):
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(4)
    processes = [context.Process(target=join_at_once, args=(server_url, barrier, rank)) for rank in range(4)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(120)
    assert [process.exitcode for process in processes] == [0, 0, 0, 0]
    assert optuna.get_all_study_names(storage=server_url) == ["race"]
    study = optuna.load_study(study_name="race", storage=server_url)
    assert sorted(trial.number for trial in study.trials) == [0, 1, 2, 3]
    assert all(trial.state == TrialState.COMPLETE for trial in study.trials)


def hammer_sqlite(url: str, barrier, rank: int, errors) -> None:
    """A cheap objective reporting 50 steps per trial, as a worker does each epoch."""
    import optuna

    from optimize.storage import open_storage

    # Heartbeats every 2 s add their writes to the contention; a grace period that no live worker outlasts keeps
    # a heartbeat that CI's load delayed from failing a running trial (this test is about locks, not staleness).
    storage = open_storage(url, RecoveryConfig(heartbeat_interval=2, grace_period=120))
    study = optuna.load_study(
        study_name="hammer", storage=storage, pruner=optuna.pruners.SuccessiveHalvingPruner(min_resource=5)
    )
    barrier.wait()

    def objective(trial):
        x = trial.suggest_float("x", 0, 1)
        for step in range(1, 51):
            trial.report(x * step, step)
            trial.should_prune()
        return x

    try:
        study.optimize(objective, n_trials=6)
    except Exception as error:
        errors.put(f"{type(error).__name__}: {error}")


def test_four_workers_on_sqlite_never_see_database_is_locked(tmp_path):
    url = f"sqlite:///{tmp_path / 'hammer.db'}"
    optuna.create_study(study_name="hammer", storage=open_storage(url))
    context = multiprocessing.get_context("spawn")
    barrier, errors = context.Barrier(5), context.Queue()
    processes = [context.Process(target=hammer_sqlite, args=(url, barrier, rank, errors)) for rank in range(4)]
    for process in processes:
        process.start()
    from optuna_dashboard import wsgi

    app = wsgi(open_storage(url, read_only=True))
    barrier.wait()
    reads = 0
    while any(process.is_alive() for process in processes):
        reads += call_api(app, "/api/studies") is not None
    for process in processes:
        process.join()
    assert errors.empty(), errors.get()
    assert [process.exitcode for process in processes] == [0, 0, 0, 0]
    study = optuna.load_study(study_name="hammer", storage=url)
    assert len(study.trials) == 24 and all(trial.state.is_finished() for trial in study.trials)
    assert reads > 0
    import sqlite3

    assert sqlite3.connect(tmp_path / "hammer.db").execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def call_api(app, path: str):
    """One GET request to a WSGI app, in process; returns the body or None on a non-200 answer."""
    import io

    status = {}

    def start_response(code, headers, exc_info=None):
        status["code"] = code

    environ = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "SERVER_NAME": "test",
        "SERVER_PORT": "80",
        "wsgi.input": io.BytesIO(),
        "wsgi.url_scheme": "http",
        "wsgi.errors": io.StringIO(),
    }
    body = b"".join(app(environ, start_response))
    return body if status["code"].startswith("200") else None


def pop_waiting(url: str, barrier, popped) -> None:
    """Take WAITING trials as a worker does (`Study._pop_waiting_trial_id`) until none is left."""
    storage = open_storage(url)
    study = optuna.load_study(study_name="queue", storage=storage)
    barrier.wait()
    while (trial_id := study._pop_waiting_trial_id()) is not None:
        popped.put(trial_id)


def test_workers_on_sqlite_never_take_the_same_queued_trial(tmp_path):
    """Python's sqlite3 begins a transaction only at the first write, so two workers could both read a
    trial as WAITING and both run it; every transaction now takes SQLite's write lock when it begins."""
    url = f"sqlite:///{tmp_path / 'queue.db'}"
    study = optuna.create_study(study_name="queue", storage=open_storage(url))
    for value in range(60):
        study.enqueue_trial({"x": value}, skip_if_exists=False)
    context = multiprocessing.get_context("spawn")
    barrier, popped = context.Barrier(4), context.Queue()
    processes = [context.Process(target=pop_waiting, args=(url, barrier, popped)) for _ in range(4)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=120)
    taken = []
    while not popped.empty():
        taken.append(popped.get())
    assert [process.exitcode for process in processes] == [0, 0, 0, 0]
    assert len(taken) == 60 and len(set(taken)) == 60, f"taken twice: {sorted(t for t in taken if taken.count(t) > 1)}"

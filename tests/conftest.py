"""Shared fixtures: a tiny study folder, so service tests run real trials in seconds on a CPU."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

pytest_plugins = ["tests.cpu_durations"]

ROOT = Path(__file__).resolve().parent.parent
OPTIMIZE = str(Path(sys.executable).parent / "optimize")

TINY_STUDY = """
description = "tiny test study"

[data]
val_fraction = 0.25

[data.synthetic]
n_images = 24
size = 32
seed = 1

[training]
base_filters = 4
depth = 2
max_epochs = {max_epochs}
patience = 4
run_eagerly = true
batch_size = 8

[search]
architecture = ["unet", "attention_unet"]
loss = ["dice", "combined"]
learning_rate = {{ low = 1e-5, high = 1e-2, log = true }}

[sampler]
n_startup_trials = 2
seed = 0

[pruner]
kind = "asha"
min_resource = 1
reduction_factor = 2

[budget]
max_trials = {max_trials}

[recovery]
heartbeat_interval = {heartbeat}
grace_period = {grace}

[[enqueue]]
architecture = "unet"
loss = "dice"
learning_rate = 1e-2

[[enqueue]]
architecture = "attention_unet"
loss = "combined"
learning_rate = 1e-5
"""


def write_tiny_study(
    folder: Path,
    name: str = "tiny",
    *,
    max_epochs: int = 3,
    max_trials: int = 8,
    heartbeat: int = 60,
    grace: int = 120,
) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.toml"
    path.write_text(TINY_STUDY.format(max_epochs=max_epochs, max_trials=max_trials, heartbeat=heartbeat, grace=grace))
    return path


@pytest.fixture(autouse=True)
def checkout_studies_untouched():
    """No test writes into the checkout's own `studies/` folder: that is where users keep their studies.

    A test whose subprocess runs from the checkout without `OPTIMIZE_STUDIES_DIR` writes there unseen
    (a database, a study's artifacts), so every test is checked after it ends.
    """
    folder = ROOT / "studies"
    before = {path.name for path in folder.iterdir()}
    yield
    added = sorted({path.name for path in folder.iterdir()} - before)
    assert not added, f"the test wrote {', '.join(added)} into {folder}"


@pytest.fixture
def studies(tmp_path, monkeypatch) -> Path:
    """A studies folder holding `tiny.toml`, made the current one for the `optimize` code."""
    return use_studies_folder(tmp_path / "studies", monkeypatch)


def use_studies_folder(folder: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    write_tiny_study(folder)
    monkeypatch.setenv("OPTIMIZE_STUDIES_DIR", str(folder))
    monkeypatch.delenv("OPTIMIZE_STORAGE", raising=False)
    return folder


@pytest.fixture(scope="session")
def finished_study(tmp_path_factory):
    """The tiny study after two `optimize run` invocations (8 + 4 real trials) on the default SQLite storage.

    Returns (study, studies folder, output of the first run, output of the second). Shared by the
    service and report tests; treat it as read-only.
    """
    import contextlib
    import io

    import optuna

    from optimize.cli import main

    with pytest.MonkeyPatch.context() as monkeypatch:
        folder = use_studies_folder(tmp_path_factory.mktemp("finished") / "studies", monkeypatch)
        write_tiny_study(folder, max_trials=12)
        first, second = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(first):
            assert main(["run", "--study", "tiny", "--n-trials", "8"]) == 0
        with contextlib.redirect_stdout(second):
            assert main(["run", "--study", "tiny", "--n-trials", "4"]) == 0
    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{folder / 'tiny.db'}")
    return study, folder, first.getvalue(), second.getvalue()


def run_cli(*args: str, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """The real `optimize` console script in a subprocess."""
    return subprocess.run(
        [OPTIMIZE, *args], capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})}
    )


POSTGRES_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
MARIADB_ADMIN = "mysql+pymysql://root@127.0.0.1:3306/test"


def fresh_database(admin_url: str) -> tuple[str, callable]:
    """A new, empty database on the real server; returns its URL and a function that drops it."""
    import sqlalchemy
    from sqlalchemy.engine import make_url

    name = f"opt_{uuid.uuid4().hex[:12]}"
    engine = sqlalchemy.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(sqlalchemy.text(f"CREATE DATABASE {name}"))

    def drop() -> None:
        with engine.connect() as connection:
            if admin_url.startswith("postgresql"):
                connection.execute(
                    sqlalchemy.text(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'")
                )
            connection.execute(sqlalchemy.text(f"DROP DATABASE IF EXISTS {name}"))
        engine.dispose()

    return make_url(admin_url).set(database=name).render_as_string(hide_password=False), drop


@pytest.fixture
def postgres_url():
    url, drop = fresh_database(POSTGRES_ADMIN)
    yield url
    drop()


@pytest.fixture
def mariadb_url():
    url, drop = fresh_database(MARIADB_ADMIN)
    yield url
    drop()


@pytest.fixture(params=["postgresql", "mariadb"])
def server_url(request):
    """Each real database server in turn, with a database of its own."""
    url, drop = fresh_database(POSTGRES_ADMIN if request.param == "postgresql" else MARIADB_ADMIN)
    yield url
    drop()

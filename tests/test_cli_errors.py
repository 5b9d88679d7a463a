"""Unusable paths and storage URLs, stop signals, and read-only commands, through the real `optimize` command.

Issue #11: an OS or URL problem is one line on stderr naming the path or URL (never a password) with
exit code 2; SIGINT/SIGTERM at any moment is one line with exit 130/143; `status`, `export-best`,
`report` and `dashboard` leave the study database byte-identical and work on a read-only copy.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import optuna
import pytest
import sqlalchemy
from optuna.storages.journal import JournalFileBackend, JournalStorage

from optimize.errors import StorageError
from optimize.storage import open_storage
from tests.conftest import OPTIMIZE, run_cli
from tests.helpers import free_port, get_json

PASSWORD = "s3cret-pw"
NOBODY = 65534
SETPRIV = shutil.which("setpriv")


def one_error_line(result: subprocess.CompletedProcess, *, exit_code: int = 2) -> str:
    """The single non-empty stderr line of a refused command, after checking exit code and no traceback."""
    assert result.returncode == exit_code, (result.returncode, result.stdout[-2000:], result.stderr[-2000:])
    assert "Traceback" not in result.stderr
    assert PASSWORD not in result.stderr + result.stdout
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.mark.parametrize(
    "command, url, expected",
    [
        (
            "status",
            f"postgresql://alice:{PASSWORD}@dbhost:port/optuna",
            "storage URL 'postgresql://alice:***@dbhost:port/optuna' has a port that is not a number",
        ),
        (
            "run",
            f"mysql+pymysql://root:{PASSWORD}@127.0.0.1:33o6/test",
            "storage URL 'mysql+pymysql://root:***@127.0.0.1:33o6/test' has a port that is not a number",
        ),
        ("export-best", f"foo://alice:{PASSWORD}@dbhost/optuna", "unknown database kind 'foo'"),
        ("report", f"mysql://alice:{PASSWORD}@dbhost/optuna", "driver of 'mysql' is not installed (No module named"),
        ("dashboard", f"postgresql+pg8000://alice:{PASSWORD}@dbhost/optuna", "driver of 'postgresql+pg8000'"),
        ("status", f"alice:{PASSWORD}@dbhost/optuna", "storage URL 'alice:***@dbhost/optuna' is not a database URL"),
        ("run", "sqlite://", "storage URL 'sqlite://' is an in-memory SQLite database, gone when the command ends"),
        ("status", "sqlite:///:memory:", "storage URL 'sqlite:///:memory:' is an in-memory SQLite database"),
    ],
)
def test_unusable_storage_url_is_one_line_without_password(studies, command, url, expected):
    line = one_error_line(run_cli(command, "--study", "tiny", "--storage", url))
    assert line.startswith(f"optimize {command}: error: ") and expected in line


@pytest.mark.parametrize("study", ["/", "dir/", ".toml"])
def test_a_study_option_without_a_name_is_one_line(studies, study):
    """`--study dir/` read as the study '' (studies/.db, studies/.toml)."""
    line = one_error_line(run_cli("status", "--study", study))
    assert line == (
        f"optimize status: error: --study {study!r} names no study; expected NAME (studies/NAME.toml) or a path to "
        "NAME.toml"
    )


@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_storage_file_under_a_regular_file_is_one_line(studies, tmp_path, kind):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a regular file\n")
    path = blocker / "deeper" / ("tiny.db" if kind == "sqlite" else "tiny.log")
    url = f"sqlite:///{path}" if kind == "sqlite" else str(path)
    line = one_error_line(run_cli("run", "--study", "tiny", "--storage", url))
    assert line.endswith(f"{path}: {blocker} is a file, not a folder")
    assert blocker.read_text() == "a regular file\n"


def test_output_folders_and_missing_journal_are_one_line(study_copy, tmp_path):
    """The commands that read the study first (so load Keras): run side by side to save time."""
    folder, _ = study_copy
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    missing = tmp_path / "no" / "such" / "folder" / "tiny.log"
    env = {"OPTIMIZE_STUDIES_DIR": str(folder)}
    export, report, status = run_cli_together(
        [["export-best", "--study", "tiny", "--out", str(blocker)], env],
        [["report", "--study", "tiny", "--out", str(blocker / "report")], env],
        [["status", "--study", "tiny", "--storage", str(missing)], env],
    )
    assert one_error_line(export).endswith(f"output folder {blocker} is a file, not a folder; pass --out with a folder")
    assert f"output folder {blocker / 'report'} is under {blocker}, which is a file" in one_error_line(report)
    assert one_error_line(status).endswith(
        f"no study database at {missing}; run `optimize run` first or pass --storage"
    )
    assert not (tmp_path / "no").exists()
    assert blocker.read_text() == "x"


@pytest.mark.parametrize("stop, exit_code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_stop_signal_while_keras_loads_is_one_line(studies, stop, exit_code):
    """Keras takes seconds to import; a signal one second in arrives during that import."""
    process = subprocess.Popen(
        [OPTIMIZE, "run", "--study", "tiny", "--n-trials", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(1.0)
    process.send_signal(stop)
    out, err = process.communicate(timeout=120)
    result = subprocess.CompletedProcess(process.args, process.returncode, out, err)
    assert one_error_line(result, exit_code=exit_code) == f"optimize run: interrupted by {stop.name}"
    assert not (studies / "tiny.db").exists(), "stopped before the study was opened"


A_LIBRARY_MEETS_THE_SIGNAL = """
import os, signal, sys, time
from optimize.cli import main

def receive():
    os.kill(os.getpid(), signal.{stop})
    time.sleep(5)

def swallow():
    try:
        receive()
    except BaseException:
        pass

class Resource:
    def __del__(self):
        receive()

def disguise():
    try:
        receive()
    except BaseException as stop:
        raise ImportError("initialization failed") from stop

MEET = {{"swallow": swallow, "del": Resource, "disguise": disguise}}["{how}"]

class LoadingLibrary:
    def find_spec(self, name, path=None, target=None):
        if name == "{module}":
            sys.meta_path.remove(self)
            MEET()
        return None

sys.meta_path.insert(0, LoadingLibrary())
sys.exit(main(["run", "--study", "tiny", "--n-trials", "1"]))
"""


@pytest.mark.parametrize(
    "stop, module, how",
    [
        (signal.SIGTERM, "keras", "del"),  # reported as "Exception ignored in", and the import went on
        (signal.SIGINT, "keras", "swallow"),  # a broad `except` dropped it
        (signal.SIGTERM, "scipy.ndimage", "disguise"),  # a compiled extension: "ImportError: initialization failed"
    ],
)
def test_a_stop_signal_a_library_swallows_or_disguises_still_ends_the_run_in_one_line(studies, stop, module, how):
    """The race behind a CI failure (`run` finished its trial, exit 0, after SIGTERM), made certain."""
    code = A_LIBRARY_MEETS_THE_SIGNAL.format(stop=stop.name, module=module, how=how)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert one_error_line(result, exit_code=128 + stop) == f"optimize run: interrupted by {stop.name}"
    assert "trial" not in result.stdout
    assert not (studies / "tiny.db").exists()


@pytest.fixture
def study_copy(finished_study) -> Iterator[tuple[Path, Path]]:
    """A copy of the finished study's SQLite file (WAL mode, as `optimize run` leaves it) in a folder of its own.

    The folder is under a world-readable temporary folder so that an unprivileged user can read it.
    Yields (studies folder holding only `tiny.db`, a world-writable output folder).
    """
    source = finished_study[1] / "tiny.db"
    base = Path(tempfile.mkdtemp(prefix="optimize-read-only-"))
    try:
        base.chmod(0o755)
        folder, out = base / "studies", base / "out"
        folder.mkdir()
        out.mkdir()
        out.chmod(0o777)
        with (
            closing(sqlite3.connect(f"file:{source}?mode=ro", uri=True)) as reader,
            closing(sqlite3.connect(folder / "tiny.db")) as copy,
        ):
            reader.backup(copy)
            assert copy.execute("PRAGMA journal_mode=WAL").fetchone()[0] == "wal"
        assert sorted(os.listdir(folder)) == ["tiny.db"]
        yield folder, out
    finally:
        for path in (base, *base.rglob("*")):
            path.chmod(0o777 if path.is_dir() else 0o666)
        shutil.rmtree(base)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("copy", ["writable", "read-only"])
def test_read_only_commands_leave_the_database_byte_identical(study_copy, finished_study, copy):
    """`status`, `export-best`, `report` and a dashboard answering an API call, all at once, change no byte.

    "read-only": the file is mode 444 in a folder of mode 555, as a study copied off a cluster may be,
    and the commands run as an unprivileged user (tests run as root, whom permissions do not stop).
    """
    folder, out = study_copy
    database = folder / "tiny.db"
    before = digest(database)
    prefix: list[str] = []
    if copy == "read-only":
        database.chmod(0o444)
        folder.chmod(0o555)
        if os.geteuid() == 0:
            if SETPRIV is None:
                pytest.skip("running as root and setpriv is missing: cannot run as an unprivileged user")
            prefix = [SETPRIV, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
    env = {**os.environ, "OPTIMIZE_STUDIES_DIR": str(folder), "HOME": str(out), "PYTHONUNBUFFERED": "1"}
    env.pop("OPTIMIZE_STORAGE", None)
    command = [*prefix, sys.executable, "-m", "optimize"]
    port = free_port()
    dashboard = subprocess.Popen(
        [*command, "dashboard", "--study", "tiny", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        status, export, report = run_together(
            [[*command, "status", "--study", "tiny"], env],
            [[*command, "export-best", "--study", "tiny", "--out", str(out / "export")], env],
            [[*command, "report", "--study", "tiny", "--out", str(out / "report")], env],
        )
        summaries = wait_for_api(f"http://127.0.0.1:{port}/api/studies", dashboard)
        study_url = f"http://127.0.0.1:{port}/api/studies/{summaries[0]['study_id']}?after=0"
        served_trials = wait_for_api(study_url, dashboard, key="trials")
    finally:
        dashboard.send_signal(signal.SIGTERM)
        dash_out, dash_err = dashboard.communicate(timeout=60)
    for result in (status, export, report):
        assert result.returncode == 0, result.stderr[-3000:]
        assert "Traceback" not in result.stderr
    trials = finished_study[0].get_trials()
    assert f"study tiny: {len(trials)} trials" in status.stdout
    assert (out / "export" / "best_hyperparameters.json").is_file()
    assert len(list((out / "export" / "histories").glob("*.csv"))) == len(trials)
    assert (out / "report" / "report.html").is_file()
    assert [summary["study_name"] for summary in summaries] == ["tiny"]
    assert len(served_trials) == len(trials)
    assert dashboard.returncode == 143 and "Traceback" not in dash_err, dash_err[-3000:]
    assert [line for line in dash_err.splitlines() if line.strip()] == ["optimize dashboard: interrupted by SIGTERM"]
    assert "optuna-dashboard for study 'tiny'" in dash_out
    assert sorted(os.listdir(folder)) == ["tiny.db"], "no -wal or -shm file left next to the database"
    assert digest(database) == before


def wait_for_api(url: str, process: subprocess.Popen, key: str = "study_summaries") -> list[dict]:
    """`key` of the dashboard's JSON answer at `url`, once it answers (it starts slowly on a busy machine)."""
    deadline = time.monotonic() + 120
    while True:
        assert process.poll() is None, f"dashboard exited: {process.stderr.read()[-3000:]}"
        try:
            return get_json(url)[key]
        except OSError:
            assert time.monotonic() < deadline, "dashboard never answered"
            time.sleep(0.3)


def run_together(*commands: list) -> list[subprocess.CompletedProcess]:
    """Run `[argv, env]` commands side by side; their results in the same order."""
    processes = [
        subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        for argv, env in commands
    ]
    results = []
    for process in processes:
        out, err = process.communicate(timeout=300)
        results.append(subprocess.CompletedProcess(process.args, process.returncode, out, err))
    return results


def run_cli_together(*commands: list) -> list[subprocess.CompletedProcess]:
    """`run_cli` for several `[args, extra env]` side by side."""
    return run_together(*[[[OPTIMIZE, *args], {**os.environ, **env}] for args, env in commands])


def test_read_only_sqlite_storage_refuses_writes_and_leaves_no_files(study_copy):
    """The proof that does not depend on permissions: SQLite's read-only mode refuses a write."""
    folder, _ = study_copy
    database = folder / "tiny.db"
    before = digest(database)
    storage = open_storage(f"sqlite:///{database}", read_only=True)
    study = optuna.load_study(study_name="tiny", storage=storage)
    assert study.get_trials()
    with pytest.raises(optuna.exceptions.StorageInternalError) as refused:
        study.set_user_attr("written", True)
    assert "readonly database" in str(refused.value.__cause__)
    del study, storage, refused  # the CLI closes its storage at exit; here, once nothing refers to it
    gc.collect()
    assert sorted(os.listdir(folder)) == ["tiny.db"]
    assert digest(database) == before


def test_read_only_server_storage_creates_nothing_and_refuses_writes(server_url):
    """On PostgreSQL and MariaDB: no Optuna tables made in an empty database; sessions are read-only."""
    with pytest.raises(StorageError, match=r"holds no Optuna studies; run `optimize run` first") as empty:
        open_storage(server_url, read_only=True)
    assert "\n" not in str(empty.value)
    engine = sqlalchemy.create_engine(server_url)
    assert sqlalchemy.inspect(engine).get_table_names() == []
    writer = open_storage(server_url)
    optuna.create_study(study_name="s", storage=writer).optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    reader = open_storage(server_url, read_only=True)
    study = optuna.load_study(study_name="s", storage=reader)
    assert len(study.get_trials()) == 2
    with pytest.raises(optuna.exceptions.StorageInternalError) as refused:
        study.set_user_attr("written", True)
    assert "read-only transaction" in str(refused.value.__cause__).lower().replace("read only", "read-only")
    assert "written" not in optuna.load_study(study_name="s", storage=writer).user_attrs
    for storage in (reader, writer):
        storage.engine.dispose()
    engine.dispose()


def test_read_only_journal_storage_writes_nothing(tmp_path):
    path = tmp_path / "study.log"
    optuna.create_study(study_name="j", storage=JournalStorage(JournalFileBackend(str(path)))).optimize(
        lambda t: t.suggest_float("x", 0, 1), n_trials=2
    )
    before = digest(path)
    study = optuna.load_study(study_name="j", storage=open_storage(str(path), read_only=True))
    assert len(study.get_trials()) == 2
    assert sorted(os.listdir(tmp_path)) == ["study.log"], "no lock file"
    assert digest(path) == before


def test_a_log_file_that_is_not_a_journal_is_one_line_and_unchanged(tmp_path):
    """An SQLite file named .log ended in a UnicodeDecodeError traceback; a job's one-line output named .log read
    as a journal without studies (Optuna skips a last line it cannot read, as one being written)."""
    job_log, sqlite_log = tmp_path / "job.log", tmp_path / "sqlite.log"
    job_log.write_text("PBS job 1234 started on node07\n")
    optuna.create_study(study_name="s", storage=f"sqlite:///{sqlite_log}")
    for path, problem in ((job_log, "its first line is not a JSON object"), (sqlite_log, "its first line")):
        before = digest(path)
        with pytest.raises(StorageError) as refused:
            open_storage(str(path), read_only=True)
        assert str(refused.value).startswith(f"{path} is not an Optuna journal file ({problem}")
        assert str(refused.value).endswith("expected the .log file that `optimize run --storage FILE.log` writes")
        result = run_cli("status", "--study", "s", "--storage", str(path))
        assert result.returncode == 2 and result.stderr.strip().splitlines() == [
            f"optimize status: error: {refused.value}"
        ]
        assert digest(path) == before


def path_options() -> Iterator[tuple[str, str]]:
    """Every (command, option) of the CLI that takes a path, URL or name (metavar DIR, FILE, URL, NAME)."""
    from optimize.cli import build_parser

    commands = next(action for action in build_parser()._actions if isinstance(action, argparse._SubParsersAction))
    for name, sub in commands.choices.items():
        for action in sub._actions:
            if action.metavar in ("DIR", "FILE", "URL", "NAME") or action.dest in ("file", "dir"):
                yield name, action.option_strings[0] if action.option_strings else action.dest


@pytest.mark.parametrize("command, option", sorted(path_options()))
@pytest.mark.parametrize("value", ["", " "])
def test_an_empty_path_url_or_name_is_refused_not_taken_as_not_given(
    command, option, value, capsys, tmp_path, monkeypatch
):
    """`--data "$DATA"` with DATA unset passes '': taken as not given, the run trained on the study's own data."""
    from optimize.cli import main

    monkeypatch.chdir(tmp_path)  # were one taken, it would write here, not into the checkout
    monkeypatch.setenv("OPTIMIZE_STUDIES_DIR", str(tmp_path / "studies"))

    required = {
        "--study": "tiny",
        "--data": "d",
        "--pred": "p",
        "--model": "m",
        "--images": "i",
        "--out": "o",
        "file": "f",
        "dir": "d",
        "study_name": "n",
    }
    needed = {
        "run": ["--study"],
        "confirm": ["--study"],
        "export-best": ["--study"],
        "import-results": ["--study", "file"],
        "report": ["--study"],
        "dashboard": ["--study"],
        "status": ["--study"],
        "data-stats": ["dir"],
        "evaluate": ["--pred", "--data"],
        "predict": ["--model", "--images", "--out"],
        "warm-cache": ["--study"],
        "make-data": ["--out"],
        "new-study": ["study_name", "--data"],
    }[command]
    argv = [command]
    for name in {*needed, option}:
        given = value if name == option else required[name]
        argv += [given] if not name.startswith("--") else [name, given]
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 2
    error = [line for line in capsys.readouterr().err.splitlines() if line.startswith("optimize")]
    assert len(error) == 1 and error[0].startswith(f"optimize {command}: error: argument "), error
    assert error[0].endswith(f"got {value!r}") or error[0].endswith(f"got {value!r} (an unset shell variable?)")


def test_make_data_into_a_folder_of_images_is_one_line_and_writes_nothing(tmp_path):
    data = tmp_path / "data"
    assert run_cli("make-data", "--out", str(data), "--n", "2", "--size", "32").returncode == 0
    before = {path: path.stat().st_mtime_ns for path in data.rglob("*")}
    line = one_error_line(run_cli("make-data", "--out", str(data), "--n", "3", "--size", "64"), exit_code=1)
    assert line == (
        f"optimize make-data: error: {data / 'images'} already holds 2 image file(s); give a new or empty folder "
        "(make-data writes bead_0000.png, bead_0001.png, ... there)"
    )
    assert {path: path.stat().st_mtime_ns for path in data.rglob("*")} == before


@pytest.mark.parametrize("command", ["run", "confirm"])
def test_a_compile_cache_under_tensorflow_is_refused_not_ignored(command, tmp_path, monkeypatch, capsys):
    from optimize.cli import main

    monkeypatch.setenv("KERAS_BACKEND", "tensorflow")
    monkeypatch.setenv("OPTIMIZE_STUDIES_DIR", str(tmp_path))
    assert main([command, "--study", "tiny", "--compile-cache", str(tmp_path / "cache")]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"optimize {command}: error: --compile-cache {tmp_path / 'cache'}: the tensorflow backend keeps no compile "
        "cache; it serves the JAX backend (KERAS_BACKEND=jax)"
    ]
    assert not (tmp_path / "cache").exists()


@pytest.mark.parametrize(
    "flags, named",
    [(["--allow-cpu"], "--allow-cpu"), (["--compile-cache", "c", "--allow-cpu"], "--compile-cache and --allow-cpu")],
)
def test_warm_cache_list_refuses_the_flags_it_would_not_use(flags, named, tmp_path, monkeypatch, capsys):
    from optimize.cli import main

    monkeypatch.setenv("OPTIMIZE_STUDIES_DIR", str(tmp_path))
    assert main(["warm-cache", "--study", "tiny", "--list", *flags]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"optimize warm-cache: error: --list compiles nothing, so {named} would do nothing: leave out one or the other"
    ]


def users_own_study(url: str, name: str, **study_options) -> optuna.Study:
    """A study a user's own Optuna script made: our parameter names, none of our attrs."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution

    study = optuna.create_study(study_name=name, storage=url, **(study_options or {"direction": "maximize"}))
    distributions = {
        "architecture": CategoricalDistribution(["unet", "resunet"]),
        "learning_rate": FloatDistribution(1e-5, 1e-2, log=True),
    }
    for number, value in enumerate((0.5, 0.7, 0.6)):
        params = {"architecture": "unet", "learning_rate": 10 ** -(number + 2)}
        values = {"values": [value, 1 - value]} if "directions" in study_options else {"value": value}
        study.add_trial(optuna.trial.create_trial(params=params, distributions=distributions, **values))
    return study


@pytest.mark.parametrize(
    "name, options, shown",
    [("multi", {"directions": ["maximize", "minimize"]}, "2 objective(s) (maximize, minimize)"),
     ("lowest", {"direction": "minimize"}, "1 objective(s) (minimize)")],
)  # fmt: skip
def test_a_study_that_does_not_maximize_one_value_is_refused_in_one_line(name, options, shown, tmp_path, capsys):
    """A user's multi-objective study gave a RuntimeError traceback; a minimizing one, another best trial in
    status than in report."""
    from optimize.cli import main

    url = f"sqlite:///{tmp_path / 'own.db'}"
    users_own_study(url, name, **options)
    before = hashlib.sha256((tmp_path / "own.db").read_bytes()).hexdigest()
    for command in ("status", "export-best", "report"):
        out = [] if command == "status" else ["--out", str(tmp_path / command)]
        assert main([command, "--study", name, "--storage", url, *out]) == 1
        assert capsys.readouterr().err.splitlines() == [
            f"optimize {command}: error: study {name!r} has {shown}; optimize reads and runs studies that maximize "
            "one value, as it makes them (optuna-dashboard shows any study)"
        ]
    assert hashlib.sha256((tmp_path / "own.db").read_bytes()).hexdigest() == before


def test_attrs_of_other_types_than_ours_read_as_not_stored(tmp_path, capsys):
    """One trial whose attrs a user's script or a hand edit wrote (`epochs_run = "ten"`) stopped status,
    export-best and report with a traceback."""
    from optimize.cli import main

    url = f"sqlite:///{tmp_path / 'own.db'}"
    study = users_own_study(url, "odd")
    odd = {"epochs_run": "ten", "best_epoch": "three", "best_val_jaccard": "high", "retry_of": "abc",
           "oom_micro_batches": 5, "worker": 7, "reason": "error", "error": ["x"], "stability": {"a": 1}}  # fmt: skip
    study.add_trial(
        optuna.trial.create_trial(
            params=study.trials[0].params,
            distributions=study.trials[0].distributions,
            value=0.9,
            user_attrs=odd,
            system_attrs={"failed_trial": "zz", "artifacts:1": "not json"},
        )
    )
    study.set_user_attr("fingerprint", "garbage")
    for command in ("status", "export-best", "report"):
        out = [] if command == "status" else ["--out", str(tmp_path / command)]
        assert main([command, "--study", "odd", "--storage", url, *out]) == 0, capsys.readouterr().err
    shown = capsys.readouterr().out
    assert "best: trial 3  val_jaccard 0.9000  architecture=unet" in shown  # no "at epoch None"


def test_export_best_writes_strict_json_for_an_infinite_value(tmp_path):
    from optimize.cli import main

    url = f"sqlite:///{tmp_path / 'own.db'}"
    study = users_own_study(url, "endless")
    study.add_trial(
        optuna.trial.create_trial(
            params=study.trials[0].params, distributions=study.trials[0].distributions, value=float("inf")
        )
    )
    assert main(["export-best", "--study", "endless", "--storage", url, "--out", str(tmp_path / "out")]) == 0

    def refuse(constant: str) -> None:
        raise ValueError(f"{constant} is not JSON")

    summary = json.loads((tmp_path / "out" / "best_hyperparameters.json").read_text(), parse_constant=refuse)
    assert summary["trial_number"] == 3 and summary["value"] is None

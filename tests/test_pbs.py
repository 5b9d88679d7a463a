"""The PBS job scripts in pbs/: their directives, and their bodies run for real outside PBS."""

from __future__ import annotations

import os
import pwd
import re
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
from pathlib import Path

import optuna
import pytest
import sqlalchemy
from sqlalchemy.engine import make_url

from tests.conftest import OPTIMIZE, ROOT, write_tiny_study
from tests.helpers import free_port, make_user_folders

PBS = ROOT / "pbs"
SCRIPTS = sorted(PBS.glob("*.pbs"))
PG_USER = "optimizepg"

DIRECTIVES = [
    re.compile(r"-N [A-Za-z][\w.-]{0,235}"),
    re.compile(r"-l walltime=\d+:[0-5]\d:[0-5]\d"),
    re.compile(r"-l (?!walltime=)\w+=[\w.]+(:\w+=[\w.]+)*"),
    re.compile(r"-j (oe|eo|n)"),
    re.compile(r"-q [\w.@-]+"),
    re.compile(r"-J \d+-\d+(:\d+)?(%\d+)?"),
    re.compile(r"-V"),
    re.compile(r"-v \w+(=[^,\s]*)?(,\w+(=[^,\s]*)?)*"),
    re.compile(r"-[oe] \S+"),
]


def directives(script: Path) -> list[str]:
    return [line[len("#PBS") :].strip() for line in script.read_text().splitlines() if line.startswith("#PBS")]


def clean_env(**overrides: str) -> dict[str, str]:
    """The test's environment without any storage setting, plus `overrides`."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("OPTIMIZE_", "PBS_"))}
    return {**env, **overrides}


def worker_env(tmp_path: Path, **overrides: str) -> dict[str, str]:
    studies = tmp_path / "studies"
    write_tiny_study(studies, max_trials=2, max_epochs=2)
    defaults = dict(
        HOME=str(tmp_path),
        PBS_O_WORKDIR=str(tmp_path),
        PBS_ARRAY_INDEX="2",
        PBS_JOBID="123.test",
        STUDY="tiny",
        N_TRIALS="2",
        WORKERS="1",
        OPTIMIZE=OPTIMIZE,
        OPTIMIZE_STUDIES_DIR=str(studies),
        PYTHONUNBUFFERED="1",
    )
    return clean_env(**{**defaults, **overrides})


def run_script(name: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(PBS / name)], capture_output=True, text=True, env=env, timeout=timeout, cwd=env["HOME"]
    )


def stub_command(folder: Path) -> Path:
    """A stand-in for `optimize` that prints its pid, arguments and storage."""
    stub = folder / "optimize-stub"
    stub.write_text('#!/bin/bash\necho "pid=$$"\necho "args=$*"\necho "storage=$OPTIMIZE_STORAGE"\n')
    stub.chmod(0o755)
    return stub


def test_scripts_exist():
    assert {script.name for script in SCRIPTS} >= {"worker.pbs", "postgres.pbs", "dashboard.pbs"}
    assert (PBS / "README.md").is_file()


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda path: path.name)
def test_bash_syntax(script):
    result = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda path: path.name)
def test_pbs_directives_parse(script):
    lines = script.read_text().splitlines()
    assert lines[0] == "#!/bin/bash"
    found = directives(script)
    for directive in found:
        assert any(pattern.fullmatch(directive) for pattern in DIRECTIVES), f"unknown #PBS directive: {directive}"
    options = {directive.split()[0] for directive in found}
    assert {"-N", "-l", "-j"} <= options
    assert sum(directive.startswith("-l walltime=") for directive in found) == 1
    # PBS reads directives only up to the first command line.
    first_command = next(n for n, line in enumerate(lines) if line.strip() and not line.startswith("#"))
    assert all(n < first_command for n, line in enumerate(lines) if line.startswith("#PBS"))


def test_worker_asks_for_gpus_and_leaves_arrays_to_qsub():
    found = directives(PBS / "worker.pbs")
    select = next(directive for directive in found if directive.startswith("-l select="))
    resources = dict(item.split("=") for item in select.removeprefix("-l ").split(":"))
    assert int(resources["ngpus"]) >= 1 and int(resources["ncpus"]) >= 1 and resources["mem"].endswith("gb")
    assert not any(directive.startswith("-J") for directive in found)
    assert "qsub -J 1-4" in (PBS / "worker.pbs").read_text()


def test_worker_runs_trials_on_postgres(tmp_path, postgres_url):
    make_user_folders(tmp_path)  # the job's folder holds the user's own data/, models/ and losses/
    env = worker_env(tmp_path, OPTIMIZE_STORAGE=postgres_url, SEED="7")
    result = run_script("worker.pbs", env, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "--workers 1" in result.stdout and "--seed 2007" in result.stdout
    trials = optuna.load_study(study_name="tiny", storage=postgres_url).get_trials()
    assert len([trial for trial in trials if trial.state.is_finished()]) == 2, trials


def test_worker_without_storage_fails_clearly(tmp_path):
    result = run_script("worker.pbs", worker_env(tmp_path))
    assert result.returncode != 0
    message = result.stderr.strip().splitlines()
    assert len(message) == 1 and message[0].startswith("worker.pbs: error: no study storage"), result.stderr
    assert "OPTIMIZE_STORAGE" in message[0] and str(tmp_path / ".optimize" / "tiny.url") in message[0]


def test_worker_refuses_sqlite(tmp_path):
    result = run_script("worker.pbs", worker_env(tmp_path, OPTIMIZE_STORAGE=f"sqlite:///{tmp_path}/tiny.db"))
    assert result.returncode != 0 and "SQLite" in result.stderr
    assert not (tmp_path / "tiny.db").exists()


@pytest.mark.parametrize("url", ["sqlite+pysqlite:///{tmp}/tiny.db", "SQLite:///{tmp}/tiny.db"])
def test_worker_refuses_sqlite_named_with_a_driver_or_in_capitals(tmp_path, url):
    """Only `sqlite:*` was refused: `sqlite+pysqlite://` ran trials on a study file nodes share over NFS."""
    env = worker_env(tmp_path, OPTIMIZE=str(stub_command(tmp_path)), OPTIMIZE_STORAGE=url.format(tmp=tmp_path))
    result = run_script("worker.pbs", env)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith("worker.pbs: error: OPTIMIZE_STORAGE is SQLite, which breaks when nodes share")


@pytest.mark.parametrize(
    "variables, error",
    [
        ({"SEED": "abc"}, "SEED must be a non-negative integer, got 'abc'"),
        ({"SEED": "PATH[$(echo X >&2)]"}, "SEED must be a non-negative integer, got 'PATH[$(echo X >&2)]'"),  # ran
        ({"SEED": "1 2"}, "SEED must be a non-negative integer, got '1 2'"),
        ({"STORAGE_WAIT": "10m"}, "STORAGE_WAIT must be a whole number of seconds, got '10m'"),
        ({"VENV": "/nowhere"}, "VENV=/nowhere is not a virtual environment (no /nowhere/bin/activate)"),
        ({"N_TRIALS": "ten"}, "N_TRIALS must be a positive integer (empty: until the study's budget), got 'ten'"),
        ({"WORKERS": "0"}, "WORKERS must be a positive integer (empty: one worker per GPU), got '0'"),
        ({"TRIALS_PER_GPU": "two"}, "TRIALS_PER_GPU must be a positive integer, got 'two'"),
        ({"TIMEOUT": "1h"}, "TIMEOUT must be a number of seconds, got '1h'"),
        ({"PBS_O_WORKDIR": "/nowhere"}, "PBS_O_WORKDIR=/nowhere is not a folder this node can enter"),
    ],
)
def test_worker_refuses_bad_variables_in_one_line_before_optimize_starts(tmp_path, variables, error):
    env = worker_env(tmp_path, OPTIMIZE=str(stub_command(tmp_path)), OPTIMIZE_STORAGE="postgresql://db/x", **variables)
    result = run_script("worker.pbs", env)
    assert (result.returncode, result.stdout, result.stderr) == (2, "", f"worker.pbs: error: {error}\n")


@pytest.mark.parametrize("script", ["worker.pbs", "dashboard.pbs"])
def test_a_job_without_home_and_storage_says_so(tmp_path, script):
    """bash's own 'HOME: unbound variable' (set -u) was all a job without HOME said."""
    env = worker_env(tmp_path, OPTIMIZE=str(stub_command(tmp_path)))
    del env["HOME"]
    result = subprocess.run(["bash", str(PBS / script)], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert (result.returncode, result.stdout, result.stderr) == (
        2,
        "",
        f"{script}: error: HOME is not set, so there is no default OPTIMIZE_STORAGE_FILE: set OPTIMIZE_STORAGE or "
        "OPTIMIZE_STORAGE_FILE\n",
    )


def test_worker_reads_a_url_file_with_spaces_and_a_windows_line_end_and_a_decimal_seed(tmp_path):
    (tmp_path / ".optimize").mkdir()
    (tmp_path / ".optimize" / "tiny.url").write_text("  postgresql+psycopg://db-node:54321/optimize \r\n")
    env = worker_env(tmp_path, OPTIMIZE=str(stub_command(tmp_path)), SEED="0042", PBS_ARRAY_INDEX="1")
    result = run_script("worker.pbs", env)
    assert result.returncode == 0, result.stderr
    assert "storage=postgresql+psycopg://db-node:54321/optimize\n" in result.stdout
    assert "--seed 1042" in result.stdout  # not octal 0042 = 34 (and 08 was refused by bash, then dropped)


def test_worker_reads_url_file_and_execs_optimize(tmp_path):
    url = "postgresql+psycopg://optimize:s3cret@db-node:54321/optimize"
    (tmp_path / ".optimize").mkdir()
    (tmp_path / ".optimize" / "tiny.url").write_text(url + "\n")
    env = worker_env(tmp_path, OPTIMIZE=str(stub_command(tmp_path)), SEED="5", PBS_ARRAY_INDEX="3")
    del env["WORKERS"]
    process = subprocess.Popen(
        ["bash", str(PBS / "worker.pbs")], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert f"pid={process.pid}" in out  # exec: PBS's SIGTERM reaches optimize itself
    assert "args=run --study tiny --n-trials 2 --gpus all-visible --trials-per-gpu 2 --seed 3005" in out
    assert f"storage={url}" in out
    assert "optimize:***@db-node" in out and out.count("s3cret") == 1  # printed only by the stub
    env["OPTIMIZE_STORAGE"] = "postgresql+psycopg://optimize@db-node/optimize?sslmode=require&password=s3cret"
    shown = run_script("worker.pbs", env).stdout
    assert "worker.pbs: storage postgresql+psycopg://optimize@db-node/optimize?sslmode=require&password=***" in shown


def test_confirm_jobs_run_optimize_confirm_and_refuse_search_settings(tmp_path):
    url = "postgresql+psycopg://optimize@db-node:5432/optimize"
    env = worker_env(
        tmp_path, OPTIMIZE=str(stub_command(tmp_path)), OPTIMIZE_STORAGE=url, CONFIRM="--top-k 3 --seeds 2"
    )
    del env["WORKERS"], env["N_TRIALS"]
    result = run_script("worker.pbs", env)
    assert result.returncode == 0, result.stderr
    assert "args=confirm --study tiny --top-k 3 --seeds 2 --gpus all-visible --trials-per-gpu 2\n" in result.stdout
    refused = run_script("worker.pbs", {**env, "SEED": "5"})
    assert refused.returncode == 2 and "args=" not in refused.stdout
    assert refused.stderr.strip() == (
        "worker.pbs: error: SEED is set, but CONFIRM runs optimize confirm, which takes no --seed: unset SEED"
    )


def test_warm_cache_job_runs_optimize_warm_cache_under_jax(tmp_path):
    stub = tmp_path / "optimize-stub"
    stub.write_text('#!/bin/bash\necho "args=$*"\necho "backend=$KERAS_BACKEND"\n')
    stub.chmod(0o755)
    env = worker_env(tmp_path, OPTIMIZE=str(stub))

    result = run_script("warm_cache.pbs", env)

    assert result.returncode == 0, result.stderr
    assert "args=warm-cache --study tiny\nbackend=jax\n" in result.stdout
    missing = run_script("warm_cache.pbs", {**env, "OPTIMIZE": str(tmp_path / "absent")})
    assert missing.returncode == 2 and "not found" in missing.stderr


def test_dashboard_prints_the_tunnel(tmp_path):
    env = worker_env(
        tmp_path,
        OPTIMIZE=str(stub_command(tmp_path)),
        OPTIMIZE_STORAGE="postgresql+psycopg://u:p@db/optimize",
        PBS_O_HOST="login1",
    )
    result = run_script("dashboard.pbs", env)
    assert result.returncode == 0, result.stderr
    assert "args=dashboard --study tiny --host 127.0.0.1 --port 8080" in result.stdout
    assert "ssh -N -L 8080:127.0.0.1:8080 -J " in result.stdout and "@login1 " in result.stdout
    assert "http://localhost:8080/dashboard/" in result.stdout
    result = run_script("dashboard.pbs", {**env, "DASHBOARD_HOST": "0.0.0.0", "DASHBOARD_PORT": "8090"})
    assert "--host 0.0.0.0 --port 8090" in result.stdout
    assert re.search(r"ssh -N -L 8090:\S+:8090 \S+@login1$", result.stdout, re.MULTILINE), result.stdout
    result = run_script("dashboard.pbs", {**env, "DASHBOARD_HOST": "::1"})  # through the node's name: unreachable
    assert "--host ::1 --port 8080" in result.stdout and "ssh -N -L 8080:[::1]:8080 -J " in result.stdout


def port_open(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(1)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def unprivileged_user() -> dict:
    """`user=`/`group=` for Popen: initdb and postgres refuse to run as root."""
    if os.geteuid() != 0:
        return {}
    try:
        pwd.getpwnam(PG_USER)
    except KeyError:
        created = subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", PG_USER],
            capture_output=True,
            text=True,
        )
        if created.returncode != 0:
            pytest.skip(f"running as root and cannot create user {PG_USER}: {created.stderr.strip()}")
    entry = pwd.getpwnam(PG_USER)
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}


def start_postgres(home: Path, port: int, log: Path, user: dict) -> subprocess.Popen:
    env = clean_env(HOME=str(home), PGDATA=str(home / "pgdata"), PG_HOST="127.0.0.1", PG_PORT=str(port), STUDY="tiny")
    with log.open("a") as output:
        return subprocess.Popen(
            ["bash", str(PBS / "postgres.pbs")],
            stdout=output,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=home,
            start_new_session=True,
            **user,
        )


def wait_for_url(process: subprocess.Popen, url_file: Path, log: Path) -> str:
    deadline = time.monotonic() + 60
    while not url_file.exists():
        assert process.poll() is None, f"postgres.pbs exited with {process.returncode}:\n{log.read_text()}"
        assert time.monotonic() < deadline, f"no URL file after 60 s:\n{log.read_text()}"
        time.sleep(0.2)
    return url_file.read_text().strip()


def stop_postgres(process: subprocess.Popen, port: int, url_file: Path, log: Path) -> None:
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 0, log.read_text()
    assert not port_open(port)
    assert not url_file.exists()
    assert "postgres.pbs: server stopped" in log.read_text()


def test_postgres_job_serves_the_study_and_stops_on_sigterm():
    user = unprivileged_user()
    home = Path(tempfile.mkdtemp(prefix="optimize-pbs-", dir="/tmp"))
    if user:
        os.chown(home, user["user"], user["group"])
    log = Path(tempfile.mkdtemp(prefix="optimize-pbs-log-")) / "postgres.log"
    url_file = home / ".optimize" / "tiny.url"
    port = free_port()
    process = start_postgres(home, port, log, user)
    try:
        url = wait_for_url(process, url_file, log)
        mode = url_file.stat().st_mode
        assert stat.S_IMODE(mode) == 0o600 and stat.S_IMODE(url_file.parent.stat().st_mode) == 0o700
        assert re.fullmatch(rf"postgresql\+psycopg://optimize:[0-9a-f]{{32}}@127\.0\.0\.1:{port}/optimize", url)
        engine = sqlalchemy.create_engine(url)
        with engine.begin() as connection:
            connection.execute(sqlalchemy.text("CREATE TABLE kept (value int)"))
            connection.execute(sqlalchemy.text("INSERT INTO kept VALUES (42)"))
        engine.dispose()
        wrong = sqlalchemy.create_engine(make_url(url).set(password="wrong"))
        with pytest.raises(sqlalchemy.exc.OperationalError, match="password authentication failed"):
            wrong.connect()
        wrong.dispose()
        stop_postgres(process, port, url_file, log)

        # A second job on the same data directory: same password, same data.
        process = start_postgres(home, port, log, user)
        assert wait_for_url(process, url_file, log) == url
        engine = sqlalchemy.create_engine(url)
        with engine.connect() as connection:
            assert connection.execute(sqlalchemy.text("SELECT value FROM kept")).scalar_one() == 42
        engine.dispose()
        stop_postgres(process, port, url_file, log)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        shutil.rmtree(home, ignore_errors=True)
        shutil.rmtree(log.parent, ignore_errors=True)


def test_postgres_job_on_a_port_another_server_answers_says_so():
    """Another user's server on the port: this job's server failed to bind, but the script took the other for its
    own and ended in 'password authentication failed' (shared nodes all default to one port)."""
    user = unprivileged_user()
    home = Path(tempfile.mkdtemp(prefix="optimize-pbs-", dir="/tmp"))
    if user:
        os.chown(home, user["user"], user["group"])
    log = Path(tempfile.mkdtemp(prefix="optimize-pbs-log-")) / "postgres.log"
    try:
        process = start_postgres(home, 5432, log, user)  # the test database server's port
        assert process.wait(timeout=120) == 2, log.read_text()
        assert log.read_text().strip().splitlines()[-1] == (
            "postgres.pbs: error: another PostgreSQL server already answers at 127.0.0.1:5432 (another user's, or "
            "another job's): set PG_PORT to a free port"
        )
        assert not (home / ".optimize" / "tiny.url").exists()
    finally:
        shutil.rmtree(home, ignore_errors=True)
        shutil.rmtree(log.parent, ignore_errors=True)


def test_postgres_job_takes_the_server_programs_of_pg_config_first():
    """A `module load postgresql` puts its pg_config on the PATH: its initdb is the one run, not one that
    the system also has under /usr/lib/postgresql."""
    user = unprivileged_user()
    home = Path(tempfile.mkdtemp(prefix="optimize-pbs-", dir="/tmp"))
    try:
        module_bin = home / "module" / "bin"
        module_bin.mkdir(parents=True)
        (module_bin / "pg_config").write_text(f'#!/bin/bash\n[ "$1" = --bindir ] && echo "{module_bin}"\n')
        (module_bin / "initdb").write_text('#!/bin/bash\necho "initdb of the loaded module" >&2\nexit 1\n')
        for program in module_bin.iterdir():
            program.chmod(0o755)
        home.chmod(0o755)
        if user:
            os.chown(home, user["user"], user["group"])
        path = f"{module_bin}:{os.environ['PATH']}"
        env = clean_env(HOME=str(home), PGDATA=str(home / "pgdata"), PG_HOST="127.0.0.1", PG_PORT=str(free_port()))
        env["PATH"] = path
        env.pop("PG_BIN", None)
        result = subprocess.run(
            ["bash", str(PBS / "postgres.pbs")], capture_output=True, text=True, env=env, cwd=home, timeout=60, **user
        )
        assert "initdb of the loaded module" in result.stdout + result.stderr, result.stdout + result.stderr
        assert f"initdb failed for {home / 'pgdata'}" in result.stderr
        assert result.returncode == 2
    finally:
        shutil.rmtree(home, ignore_errors=True)

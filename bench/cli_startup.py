"""Commands that read a finished study (`optimize status`, `export-best`, `report`), timed whole from outside.

A login node runs these between jobs, so each should answer within a second. Every run starts the real
command (the console script's code, through `python -c`) on a finished study: a copy of `studies/demo.db`
when the demo has run in this checkout, else a 2-trial tiny study that this script first runs with the
checkout. Wall, user and system seconds come from the operating system's accounting of the finished child
(`os.wait4`), and each run says whether Keras was loaded when it exited; the medians are the figures to
quote. `--before REV` (default: e40962a, before these commands stopped loading Keras) times that revision,
checked out in a temporary git worktree and run with this virtual environment, run for run in turn with
the checkout's, so that both see the same machine. Each command runs once untimed first, so that the
timed runs find the files cached and the bytecode written, as after an install (in a temporary
PYTHONPYCACHEPREFIX, even under PYTHONDONTWRITEBYTECODE). `--smoke` times this checkout's `status` once, on
a study written without training, with no untimed run first and no revision before.

    python bench/cli_startup.py --runs 10
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from _common import add_output_args, describe_machine, markdown_table, median, publish
from demo import worktree

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_BEFORE = "e40962a"
TINY_STUDY = """
[data.synthetic]
n_images = 16
size = 32
[training]
base_filters = 4
depth = 2
max_epochs = 1
batch_size = 4
run_eagerly = true
[search]
architecture = ["unet", "resunet"]
[budget]
max_trials = 2
"""
KERAS_AT_EXIT = "keras loaded at exit: "
LAUNCHER = """
import atexit, sys
sys.path.insert(0, {source!r})
atexit.register(lambda: print({marker!r} + str("keras" in sys.modules), file=sys.stderr))
from optimize.cli import main
sys.exit(main())
"""
"""`optimize` from the code in `source`, saying at exit whether Keras was loaded."""


@dataclass
class CommandRun:
    wall: float
    user: float
    system: float
    keras: bool


def optimize_command(source: Path, *args: str) -> list[str]:
    return [sys.executable, "-c", LAUNCHER.format(source=str(source), marker=KERAS_AT_EXIT), *args]


def command_env(folder: Path) -> dict[str, str]:
    """The commands' environment: the studies in `folder`, and bytecode cached (also there) as after an install."""
    env = {**os.environ, "OPTIMIZE_STUDIES_DIR": str(folder / "studies"), "PYTHONPYCACHEPREFIX": str(folder / "pyc")}
    for name in ("OPTIMIZE_STORAGE", "PYTHONDONTWRITEBYTECODE"):
        env.pop(name, None)
    return env


def written_study(folder: Path) -> str:
    """For `--smoke`: the tiny study with two COMPLETE trials written straight into its database, untrained."""
    import optuna

    from optimize.results import record
    from optimize.search import load_config

    studies = folder / "studies"
    studies.mkdir()
    (studies / "tiny.toml").write_text(TINY_STUDY)
    config = load_config(str(studies / "tiny.toml"))
    study = optuna.create_study(study_name="tiny", storage=f"sqlite:///{studies / 'tiny.db'}", direction="maximize")
    study.set_user_attr("config_toml", TINY_STUDY)
    for value, architecture in ((0.31, "unet"), (0.27, "resunet")):
        study.add_trial(
            optuna.trial.create_trial(
                params={"architecture": architecture},
                distributions=config.search.distributions(),
                value=value,
                user_attrs={record.BEST_EPOCH: 1, record.EPOCHS_RUN: 1},
            )
        )
    return "tiny"


def finished_study(folder: Path) -> str:
    """A finished study in `folder`/studies: the demo's database copied, else a tiny study run here; its name."""
    studies = folder / "studies"
    studies.mkdir()
    demo = ROOT / "studies" / "demo.db"
    if demo.exists():
        (studies / "demo.toml").write_text((ROOT / "studies" / "demo.toml").read_text())
        with sqlite3.connect(demo) as source, sqlite3.connect(studies / "demo.db") as copy:
            source.backup(copy)
        return "demo"
    (studies / "tiny.toml").write_text(TINY_STUDY)
    made = subprocess.run(
        optimize_command(ROOT, "run", "--study", "tiny"), capture_output=True, text=True, env=command_env(folder)
    )
    if made.returncode != 0:
        raise SystemExit(f"making the tiny study failed:\n{made.stdout[-2000:]}{made.stderr[-3000:]}")
    return "tiny"


def time_command(source: Path, args: list[str], folder: Path) -> CommandRun:
    """One whole run of `optimize ARGS` from `source`'s code."""
    command = optimize_command(source, *args)
    log = folder / f"{args[0]}.log"
    started = time.monotonic()
    with log.open("w") as output:
        process = subprocess.Popen(
            command, cwd=source, stdout=output, stderr=subprocess.STDOUT, env=command_env(folder)
        )
        _, status, usage = os.wait4(process.pid, 0)
    wall = time.monotonic() - started
    text = log.read_text()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"optimize {' '.join(args)} failed in {source}:\n{text[-3000:]}")
    keras = [line.removeprefix(KERAS_AT_EXIT) for line in text.splitlines() if line.startswith(KERAS_AT_EXIT)]
    return CommandRun(wall, usage.ru_utime, usage.ru_stime, keras == ["True"])


def row(command: str, label: str, runs: list[CommandRun], before: list[CommandRun] | None) -> list[str]:
    wall, user, system = (median(getattr(run, name) for run in runs) for name in ("wall", "user", "system"))
    versus = f"{wall / median(run.wall for run in before):.2f}x" if before else ""
    return [
        f"`{command}`",
        label,
        str(len(runs)),
        f"{wall:.2f} s",
        f"{min(run.wall for run in runs):.2f}–{max(run.wall for run in runs):.2f} s",
        versus,
        f"{user:.2f} s",
        f"{system:.2f} s",
        "yes" if all(run.keras for run in runs) else "no" if not any(run.keras for run in runs) else "sometimes",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10, help="timed runs of each command and revision (default 10)")
    parser.add_argument(
        "--before",
        default=DEFAULT_BEFORE,
        metavar="REV",
        help=f"revision timed run for run in turn with this checkout; 'none' skips it (default {DEFAULT_BEFORE})",
    )
    add_output_args(parser)
    args = parser.parse_args()
    machine = describe_machine()
    commands = ["status", "export-best", "report"]
    if args.smoke:
        commands, args.runs, args.before = ["status"], 1, "none"
    with tempfile.TemporaryDirectory(prefix="bench-cli-startup-") as temporary:
        folder = Path(temporary)
        study = written_study(folder) if args.smoke else finished_study(folder)
        sources = {"this checkout": ROOT}
        if args.before != "none":
            sources = {f"{args.before} (before)": worktree(args.before, folder), **sources}
        runs = {(command, label): [] for command in commands for label in sources}
        try:
            for index in range(0 if args.smoke else -1, args.runs):
                for command in commands:
                    for label, source in sources.items():
                        out = ["--out", str(folder / "out")] if command != "status" else []
                        run = time_command(source, [command, "--study", study, *out], folder)
                        if index >= 0:
                            runs[command, label].append(run)
                            print(f"run {index + 1} {command} {label}: {run.wall:.2f} s wall", flush=True)
        finally:
            for source in sources.values():
                if source != ROOT:
                    subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(source)], check=False)
    before = next(iter(sources)) if len(sources) > 1 else None
    table = markdown_table(
        ["command", "code", "runs", "wall (median)", "wall range", "vs before", "user", "sys", "Keras loaded"],
        [
            row(command, label, runs[command, label], runs[command, before] if before and label != before else None)
            for command in commands
            for label in sources
        ],
    )
    title = f"Read-only commands, `optimize COMMAND --study {study}`, whole process"
    publish(args, title, table, machine)


if __name__ == "__main__":
    main()

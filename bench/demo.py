"""The demo as a new user meets it: `optimize run --study demo` timed from outside, start-up included.

Each run starts the real console script on a fresh SQLite file, so every run is the whole demo
(12 trials). Wall, user and system seconds come from the operating system's accounting of the finished
child (`os.wait4`); the medians are the figures to quote. `--git-ref REV` also times the demo of an
older revision (checked out in a temporary git worktree, run with this virtual environment), run for
run in turn with the checkout's, so that both see the same machine. `--smoke` runs the tiny test
study once.

    python bench/demo.py --runs 3 --git-ref f0f9684
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from _common import add_output_args, describe_machine, markdown_table, median, publish

ROOT = Path(__file__).resolve().parent.parent
SMOKE_STUDY = """
[data.synthetic]
n_images = 16
size = 32
[training]
base_filters = 4
depth = 2
max_epochs = 2
batch_size = 4
[search]
architecture = ["unet", "resunet"]
[budget]
max_trials = 2
"""


@dataclass
class DemoRun:
    wall: float
    user: float
    system: float
    trials: int
    best: float


def time_demo(source: Path, study: str, studies_dir: Path | None, folder: Path) -> DemoRun:
    """One whole `optimize run` of `source`'s code on a new SQLite file in `folder`."""
    database = folder / f"run-{time.monotonic_ns()}.db"
    launcher = f"import sys; sys.path.insert(0, {str(source)!r}); from optimize.cli import main; sys.exit(main())"
    command = [sys.executable, "-c", launcher, "run", "--study", study, "--storage", f"sqlite:///{database}"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if studies_dir is not None:
        env["OPTIMIZE_STUDIES_DIR"] = str(studies_dir)
    log = database.with_suffix(".log")
    started = time.monotonic()
    with log.open("w") as output:
        process = subprocess.Popen(command, cwd=source, stdout=output, stderr=subprocess.STDOUT, env=env)
        _, status, usage = os.wait4(process.pid, 0)
    wall = time.monotonic() - started
    text = log.read_text()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(command)} failed in {source}:\n{text[-3000:]}")
    best = re.search(r"^best +trial \d+:? +val_jaccard ([\d.]+)", text, re.MULTILINE)
    trials = len(re.findall(r"^trial +\d+ ", text, re.MULTILINE))
    return DemoRun(wall, usage.ru_utime, usage.ru_stime, trials, float(best.group(1)) if best else float("nan"))


def worktree(ref: str, folder: Path) -> Path:
    """`ref` checked out (detached) under `folder`."""
    path = folder / f"ref-{re.sub(r'[^A-Za-z0-9]', '_', ref)}"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(path), ref], check=True)
    return path


def row(label: str, runs: list[DemoRun]) -> list[str]:
    wall, user, system = (median(getattr(run, name) for run in runs) for name in ("wall", "user", "system"))
    return [
        label,
        str(len(runs)),
        f"{int(wall // 60)} min {wall % 60:04.1f} s",
        f"{min(run.wall for run in runs):.0f}–{max(run.wall for run in runs):.0f} s",
        f"{user:.0f} s",
        f"{system:.1f} s",
        f"{100 * system / user:.1f} %",
        str(runs[0].trials),
        f"{median(run.best for run in runs):.4f}",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="runs of each revision (default 3)")
    parser.add_argument("--git-ref", help="also time this revision's demo, run for run in turn (the 'before')")
    add_output_args(parser)
    args = parser.parse_args()
    machine = describe_machine()
    with tempfile.TemporaryDirectory(prefix="bench-demo-") as temporary:
        folder = Path(temporary)
        studies_dir = None
        study = "demo"
        if args.smoke:
            studies_dir = folder / "studies"
            studies_dir.mkdir()
            (studies_dir / "smoke.toml").write_text(SMOKE_STUDY)
            study, args.runs = "smoke", 1
        sources = {"this checkout": ROOT}
        if args.git_ref:
            sources = {f"{args.git_ref} (before)": worktree(args.git_ref, folder), **sources}
        runs: dict[str, list[DemoRun]] = {label: [] for label in sources}
        try:
            for index in range(args.runs):
                for label, source in sources.items():
                    run = time_demo(source, study, studies_dir, folder)
                    runs[label].append(run)
                    times = f"{run.wall:.1f} s wall, {run.user:.0f} s user, {run.system:.1f} s sys"
                    print(f"run {index + 1} {label}: {times}", flush=True)
        finally:
            for source in sources.values():
                if source != ROOT:
                    subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(source)], check=False)
    table = markdown_table(
        ["code", "runs", "wall (median)", "wall range", "user", "sys", "sys / user", "trials", "best val Jaccard"],
        [row(label, label_runs) for label, label_runs in runs.items()],
    )
    publish(args, f"Demo study, `optimize run --study {study}`, whole process", table, machine)


if __name__ == "__main__":
    main()

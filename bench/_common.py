"""Helpers shared by the benchmarks: output options, the machine, markdown tables and dated results.

Every benchmark prints its tables and appends them to `bench/RESULTS.md` with the date, the
machine and the exact command; `--smoke` runs tiny and appends nothing unless `--results PATH`.
"""

from __future__ import annotations

import argparse
import datetime
import math
import os
import platform
import shlex
import statistics
import subprocess
import sys
from collections.abc import Iterable, Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
RESULTS = BENCH_DIR / "RESULTS.md"
PACKAGES = ("keras", "tensorflow", "tensorflow-cpu", "jax", "optuna", "sqlalchemy")


def add_output_args(parser: argparse.ArgumentParser) -> None:
    """`--smoke` (tiny run for CI, appends nothing) and `--results PATH` (where tables are appended)."""
    parser.add_argument("--smoke", action="store_true", help="tiny sizes for CI; does not append to RESULTS.md")
    parser.add_argument(
        "--results", type=Path, default=None, help=f"file the tables are appended to (default {RESULTS}, none in smoke)"
    )


def results_path(args: argparse.Namespace) -> Path | None:
    """Where this run appends: `--results`, else RESULTS.md, else nowhere for a smoke run."""
    if args.results is not None:
        return args.results
    return None if args.smoke else RESULTS


def command_line() -> str:
    """The command that ran this benchmark, as it can be pasted again from the repository root."""
    script = Path(sys.argv[0]).resolve()
    try:
        script_text = str(script.relative_to(Path.cwd()))
    except ValueError:
        script_text = str(script)
    prefix = f"KERAS_BACKEND={os.environ['KERAS_BACKEND']} " if "KERAS_BACKEND" in os.environ else ""
    return prefix + shlex.join(["python", script_text, *sys.argv[1:]])


def gpu_names() -> list[str]:
    """Names of the NVIDIA GPUs `nvidia-smi` lists (empty without a GPU or driver)."""
    try:
        listing = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in listing.splitlines() if line.strip()]


def cpu_model() -> tuple[str, float | None]:
    """CPU model name and clock in GHz from /proc/cpuinfo (platform's name and None elsewhere)."""
    name, ghz = platform.processor() or platform.machine(), None
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return name, ghz
    for line in lines:
        key, _, value = line.partition(":")
        if key.strip() == "model name" and name in ("", platform.machine(), platform.processor()):
            name = value.strip()
        elif key.strip() == "cpu MHz" and ghz is None:
            ghz = float(value) / 1000
    return name, ghz


def memory_gib() -> float | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):
        return None


def package_versions() -> str:
    found = []
    for name in PACKAGES:
        try:
            found.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            continue
    return ", ".join(found)


def describe_machine() -> str:
    """One line: CPU, cores, memory, GPUs, load at start, Python, packages and Keras backend."""
    name, ghz = cpu_model()
    clock = f" @ {ghz:.2f} GHz" if ghz else ""
    memory = memory_gib()
    gpus = "; ".join(gpu_names()) or "no GPU"
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else math.nan
    backend = os.environ.get("KERAS_BACKEND", "tensorflow (default)")
    return (
        f"{name}{clock}, {os.cpu_count()} cores, {memory:.0f} GiB RAM, {gpus}; "
        f"load average {load:.2f} at start (machine shared with other processes); "
        f"Python {platform.python_version()}, {package_versions()}; KERAS_BACKEND={backend}"
    )


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A GitHub markdown table; cells are formatted with `str`, columns padded for reading as text."""
    text_rows = [[str(cell) for cell in row] for row in rows]
    widths = [max([len(header), *(len(row[i]) for row in text_rows)]) for i, header in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=True)) + " |"

    return "\n".join([line(headers), line(["-" * width for width in widths]), *(line(row) for row in text_rows)])


def append_results(path: Path, title: str, body: str, machine: str, command: str) -> None:
    """Append `body` under a dated heading with the machine and the exact command."""
    stamp = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    section = f"\n## {title} ({stamp})\n\n- machine: {machine}\n- command: `{command}`\n\n{body.strip()}\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as file:
        file.write(section)


def publish(args: argparse.Namespace, title: str, body: str, machine: str) -> None:
    """Print the results; append them to the results file unless this is a smoke run without `--results`."""
    command = command_line()
    print(f"\n## {title}\n\nmachine: {machine}\ncommand: {command}\n\n{body.strip()}\n", flush=True)
    path = results_path(args)
    if path is not None:
        append_results(path, title, body, machine, command)
        print(f"appended to {path}", flush=True)


def median(values: Iterable[float]) -> float:
    """Median, where infinity stands for 'never happened' (so a median of mostly-never is never)."""
    return statistics.median(list(values))


def later_epoch(epoch_seconds: Sequence[float]) -> float:
    """Median epoch after the first (NaN with a single epoch): a trial's steady epoch time."""
    return statistics.median(epoch_seconds[1:]) if len(epoch_seconds) > 1 else math.nan


def first_epoch_extra(epoch_seconds: Sequence[float]) -> float:
    """First epoch − median later epoch: tracing, compilation and autotuning of a trial."""
    return epoch_seconds[0] - later_epoch(epoch_seconds)

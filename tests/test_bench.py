"""The benchmarks' smoke modes as real subprocesses, and the analytic FLOP count they report.

The smoke runs start together (module fixture) so the whole file stays well under a minute.
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import keras
import pytest

import models

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
SCRIPTS = {
    "cli_startup": "| command ",
    "compile_cost": "| scenario ",
    "confirm": "| rank single run ",
    "demo": "| code ",
    "epoch": "| epoch ",
    "object_metrics": "| masks ",
    "packing": "| trials/GPU ",
    "search_efficiency": "| method ",
    "storage": "| storage ",
    "throughput": "| architecture ",
}


def bench_module(name: str) -> ModuleType:
    """Import `bench/NAME.py` without putting bench/ on sys.path."""
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def smoke_runs(tmp_path_factory) -> dict[str, tuple[subprocess.Popen, Path, Path]]:
    """Every script started at once with `--smoke --results TMP`; tests wait on their own."""
    folder = tmp_path_factory.mktemp("bench")
    runs = {}
    for name in SCRIPTS:
        log = folder / f"{name}.log"
        results = folder / f"{name}.md"
        with log.open("w") as output:
            process = subprocess.Popen(
                [sys.executable, str(BENCH / f"{name}.py"), "--smoke", "--results", str(results)],
                cwd=ROOT,
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        runs[name] = (process, log, results)
    yield runs
    for process, _, _ in runs.values():
        if process.poll() is None:
            process.kill()


@pytest.mark.parametrize("name", list(SCRIPTS))
def test_smoke_prints_and_writes_a_table(smoke_runs, name):
    process, log, results = smoke_runs[name]
    code = process.wait(timeout=420)
    output = log.read_text()
    assert code == 0, output[-3000:]
    assert SCRIPTS[name] in output
    written = results.read_text()
    assert SCRIPTS[name] in written
    assert "- command: `python" in written and "--smoke" in written
    assert "- machine: " in written


def test_the_grid_table_builds_resumes_and_replays(tmp_path):
    """`grid_table.py --smoke` trains 2 configurations × 3 seeds into a table, a second call adds nothing,
    `replay.py --smoke` replays searches on that table, and `search_efficiency.py --smoke --versus-table` sets
    live runs beside their replays on it."""
    table = tmp_path / "table.csv"
    build = [sys.executable, str(BENCH / "grid_table.py"), "--smoke", "--table", str(table)]
    first = subprocess.run(build, cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert first.returncode == 0, first.stderr[-3000:]
    rows = table.read_text().splitlines()
    assert rows[0].startswith("architecture,batch_size,loss,seed,epoch,val_jaccard") and len(rows) == 1 + 2 * 3 * 2
    again = subprocess.run(build, cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert again.returncode == 0 and "6 runs in" in again.stdout and "0 to train" in again.stdout
    assert table.read_text().splitlines() == rows
    results, figure = tmp_path / "results.md", tmp_path / "anytime.png"
    replay = [sys.executable, str(BENCH / "replay.py"), "--smoke", "--table", str(table), "--results", str(results)]
    replayed = subprocess.run([*replay, "--figure", str(figure)], cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert replayed.returncode == 0, replayed.stderr[-3000:]
    written = results.read_text()
    assert "| random " in written and "| TPE + ASHA (defaults) " in written and "2 replays per method" in written
    assert figure.stat().st_size > 10_000
    live = [sys.executable, str(BENCH / "search_efficiency.py"), "--smoke", "--versus-table", str(table)]
    compared = subprocess.run([*live, "--results", str(results)], cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert compared.returncode == 0, compared.stderr[-3000:]
    assert "Live against replayed on `table.csv`" in compared.stdout
    assert "| grid (users' way) | 0    |" in compared.stdout and "same configurations in order" in compared.stdout
    assert "mean |difference| " in compared.stdout


def test_smoke_appends_to_results_md_only_when_asked():
    common = bench_module("_common")
    parse = argparse.ArgumentParser()
    common.add_output_args(parse)
    assert common.results_path(parse.parse_args(["--smoke"])) is None
    assert common.results_path(parse.parse_args([])) == BENCH / "RESULTS.md"
    assert common.results_path(parse.parse_args(["--smoke", "--results", "x.md"])) == Path("x.md")


def test_markdown_table_pads_columns():
    table = bench_module("_common").markdown_table(["a", "bb"], [[1, "x"], ["long", 2.5]])
    assert table.splitlines() == ["| a    | bb  |", "| ---- | --- |", "| 1    | x   |", "| long | 2.5 |"]


def test_unet_512_base_64_is_about_385_gflop_forward():
    flops = bench_module("flops")
    try:
        gflop = flops.forward_flops(models.build("unet", (512, 512, 1), 64, 4)) / 1e9
    finally:
        keras.backend.clear_session()
    assert gflop == pytest.approx(385, rel=0.05)
    assert flops.train_flops(models.build("unet", (32, 32, 1), 4, 2)) == 3 * flops.forward_flops(
        models.build("unet", (32, 32, 1), 4, 2)
    )
    keras.backend.clear_session()


def test_gpu_session_names_its_steps_and_refuses_others_before_installing_anything(tmp_path):
    script = str(BENCH / "gpu_session.sh")
    env = {"PATH": "/usr/bin:/bin", "OUT": str(tmp_path)}
    usage = subprocess.run(["bash", script], capture_output=True, text=True, env=env, timeout=30)
    unknown = subprocess.run(["bash", script, "study", "warm"], capture_output=True, text=True, env=env, timeout=30)
    assert usage.returncode == 2 and "make gpu-wheels" in usage.stdout
    assert all(f"  {step} " in usage.stdout for step in ("study", "autotune", "epoch"))
    assert unknown.returncode == 2
    assert unknown.stderr.strip() == "unknown step warm: study, autotune or epoch"
    assert list(tmp_path.iterdir()) == [], "nothing runs before every step is known"

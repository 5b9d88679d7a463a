"""The downstream path from the command line: a demo-shaped study, export-best, predict with the exported
model in a new process, then evaluate its output against the true beads."""

from __future__ import annotations

import csv
import json
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

from tests.conftest import ROOT, run_cli


def test_search_export_predict_evaluate(tmp_path):
    """`studies/demo.toml` as shipped (128² beads, the demo's models), cut to its first trial (the enqueued
    baseline) of 2 epochs."""
    studies = tmp_path / "studies"
    studies.mkdir()
    demo = (ROOT / "studies" / "demo.toml").read_text()
    shortened = demo.replace("max_epochs = 12", "max_epochs = 2").replace("max_trials = 12", "max_trials = 1")
    assert tomllib.loads(shortened)["training"]["max_epochs"] == 2
    (studies / "demo.toml").write_text(shortened)
    env = {"OPTIMIZE_STUDIES_DIR": str(studies)}

    ran = run_cli("run", "--study", "demo", env=env, timeout=600)
    assert ran.returncode == 0, ran.stderr
    exported = run_cli("export-best", "--study", "demo", env=env)
    assert exported.returncode == 0, exported.stderr
    export = studies / "demo" / "export"
    summary = json.loads((export / "best_hyperparameters.json").read_text())
    assert summary["model"]["file"] == "best_model.keras"

    data = tmp_path / "unseen"
    made = run_cli("make-data", "--out", str(data), "--n", "3", "--size", "128", "--seed", "7")
    assert made.returncode == 0, made.stderr
    large = tmp_path / "large"
    assert run_cli("make-data", "--out", str(large), "--n", "1", "--size", "256", "--seed", "8").returncode == 0
    shutil.copy(large / "images" / "bead_0000.png", data / "images" / "large.png")
    shutil.copy(large / "masks" / "bead_0000.png", data / "masks" / "large.png")

    predicted = tmp_path / "predicted"
    model = export / "best_model.keras"
    result = run_cli("predict", "--model", str(model), "--images", str(data / "images"), "--out", str(predicted))
    assert result.returncode == 0, result.stderr
    with (predicted / "beads.csv").open() as file:
        counts = {Path(row["image"]).stem: int(row["bead_count"]) for row in csv.DictReader(file)}
    assert sorted(counts) == ["bead_0000", "bead_0001", "bead_0002", "large"]

    scored = run_cli(
        "evaluate", "--pred", str(predicted / "labels"), "--data", str(data), "--csv", str(tmp_path / "e.csv")
    )
    assert scored.returncode == 0, scored.stderr
    assert re.search(r"overall", scored.stdout)
    with (tmp_path / "e.csv").open() as file:
        rows = {row["image"]: row for row in csv.DictReader(file)}
    assert {name: int(row["n_pred"]) for name, row in rows.items()} == counts
    assert all(int(row["n_true"]) > 0 for row in rows.values())
    assert float(rows["large"]["object_f1"]) >= 0

    # `make clean-demo` (README: "to run the demo again from the start") leaves only the study file.
    assert (studies / "demo.artifacts").is_dir(), sorted(path.name for path in studies.iterdir())
    cleaned = subprocess.run(
        ["make", "--no-print-directory", "-f", str(ROOT / "Makefile"), "clean-demo"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert cleaned.returncode == 0, cleaned.stderr
    assert sorted(path.name for path in studies.iterdir()) == ["demo.toml"]

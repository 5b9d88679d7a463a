"""What the commands print is true: trial counts, a closing command that works, --help, data-stats' names."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from pathlib import Path

import numpy as np
import optuna
import pytest
from PIL import Image

from optimize.cli import main
from optimize.workers.worker import export_command, trial_counts
from tests.conftest import OPTIMIZE, run_cli, write_tiny_study


def test_a_new_study_counts_queued_trials_and_prints_an_export_command_that_works(studies, tmp_path):
    write_tiny_study(studies, max_epochs=1)
    database = tmp_path / "my results" / "x.db"
    url = f"sqlite:///{database}"

    run = run_cli("run", "--study", "tiny", "--new-study", "fresh", "--storage", url, "--n-trials", "1")

    assert run.returncode == 0, run.stderr
    header = next(line for line in run.stdout.splitlines() if line.startswith("study "))
    assert header.startswith("study fresh  storage ") and header.endswith("(2 queued, 0 finished)"), header
    hint = re.search(r"export it with: (.*)", run.stdout).group(1)
    assert hint == f"optimize export-best --study fresh --storage {shlex.quote(url)}"
    command = shlex.split(hint)
    exported = subprocess.run(
        [OPTIMIZE, *command[1:]], capture_output=True, text=True, timeout=120, cwd=tmp_path / "my results"
    )
    assert exported.returncode == 0, exported.stderr
    best = json.loads((studies / "fresh" / "export" / "best_hyperparameters.json").read_text())
    assert best["storage"]["url"] == url and best["trial_number"] == 0


def test_trials_other_workers_train_are_counted_as_running_and_failed_ones_as_finished():
    study = optuna.create_study()
    for value in (1.0, 2.0, 3.0):
        study.enqueue_trial({"x": value})
    study.tell(study.ask({"x": optuna.distributions.FloatDistribution(0, 4)}), 1.0)
    study.tell(study.ask(), state=optuna.trial.TrialState.FAIL)
    study.ask()

    assert trial_counts(study.get_trials()) == "0 queued, 1 running, 2 finished"
    study.enqueue_trial({"x": 1.5})
    assert trial_counts(study.get_trials()) == "1 queued, 1 running, 2 finished"


def test_the_export_command_names_storage_only_when_it_is_not_the_default_and_never_a_password(studies, monkeypatch):
    assert export_command("demo", f"sqlite:///{studies / 'demo.db'}") == "optimize export-best --study demo"
    assert export_command("demo2", f"sqlite:///{studies / 'demo.db'}") == (
        f"optimize export-best --study demo2 --storage sqlite:///{studies / 'demo.db'}"
    )
    assert export_command("demo", "runs/demo.log") == "optimize export-best --study demo --storage runs/demo.log"
    with_password = export_command("demo", "postgresql+psycopg://user:s3cret@db:5432/optuna")
    assert "s3cret" not in with_password
    assert with_password == (
        "optimize export-best --study demo --storage 'postgresql+psycopg://user:***@db:5432/optuna'"
        "  (with the password in place of ***)"
    )


def help_entries(text: str) -> dict[str, str]:
    """Each option or argument of an argparse help text, mapped to its help (an empty string when it has none)."""
    entries: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        if re.match(r"  \S", line):
            invocation, _, help_text = line.strip().partition("  ")
            current = entries.setdefault(invocation, [help_text.strip()])
        elif line.startswith("   ") and current is not None:
            current.append(line.strip())
        elif not line.startswith(" "):
            current = None
    return {invocation: " ".join(part for part in parts if part) for invocation, parts in entries.items()}


def help_of(capsys, *argv: str) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--help"])
    assert exit_info.value.code == 0
    return capsys.readouterr().out


def test_every_option_of_every_command_says_what_it_does_and_its_default(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    commands = re.search(r"\ncommands:\n(.*?)(\n\S|\Z)", help_of(capsys), re.DOTALL).group(1)
    names = re.findall(r"^    (\S+)", commands, re.MULTILINE)
    assert {"run", "export-best", "report", "dashboard", "status", "data-stats", "make-data"} <= set(names)
    for name in names:
        entries = help_entries(help_of(capsys, name))
        assert entries, name
        for invocation, help_text in entries.items():
            assert help_text, f"optimize {name} {invocation}: no help text"
            if invocation.startswith("-") and invocation != "-h, --help":
                assert re.search(r"\(default: [^)]+\)|; required$", help_text), (
                    f"optimize {name} {invocation}: no default in {help_text!r}"
                )
    dashboard = help_entries(help_of(capsys, "dashboard"))
    assert dashboard["--host HOST"].endswith("(default: 127.0.0.1, this machine only)")
    assert dashboard["--port PORT"].endswith("(default: 8080)")
    assert help_entries(help_of(capsys, "make-data"))["--seed SEED"].endswith("(default: 0)")


def test_data_stats_names_the_foreground_fraction_as_the_readme_does(tmp_path):
    folder = tmp_path / "beads"
    for sub in ("images", "masks"):
        (folder / sub).mkdir(parents=True)
    for name, (height, width) in {"a": (8, 8), "b": (16, 8)}.items():
        Image.fromarray(np.full((32, 32), 128, np.uint8)).save(folder / "images" / f"{name}.png")
        mask = np.zeros((32, 32), np.uint8)
        mask[4 : 4 + height, 4 : 4 + width] = 255
        Image.fromarray(mask).save(folder / "masks" / f"{name}.png")

    result = run_cli("data-stats", str(folder))

    assert result.returncode == 0, result.stderr
    assert "Foreground fraction | 9.4 %" in result.stdout.splitlines()  # (64 + 128) / (2 * 32 * 32)
    assert "positive pixel" not in result.stdout.lower()
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    assert "foreground fraction" in readme and "positive pixel ratio" not in readme.lower()


@pytest.mark.parametrize(
    ("backend", "training", "workers", "notes"),
    [
        ("jax", "", [], 1),
        ("jax", "", ["--workers", "2"], 1),
        ("jax", "jit_compile = true\n", [], 0),
    ],
    ids=["jax", "jax, two workers", "jax with XLA"],
)
def test_a_jax_study_without_xla_is_told_so_once(tmp_path, backend, training, workers, notes):
    """Under JAX a step without XLA runs op by op (17x slower). The run then stops at an unusable compile cache,
    right after Keras loads, so no trial trains here (TensorFlow keeps no cache; test_config covers it)."""
    path = write_tiny_study(tmp_path)
    path.write_text(path.read_text().replace("run_eagerly = true\n", training))
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    run = run_cli(
        "run", "--study", str(path), "--compile-cache", str(blocker / "cache"), *workers,
        env={"KERAS_BACKEND": backend},
    )  # fmt: skip
    expected = f"note: {path}: [training] jit_compile is off, so under JAX each operation of a training step "
    assert run.stdout.count(expected) == notes, run.stdout
    assert run.returncode == 1 and "cannot create the folder" in run.stdout + run.stderr, run.stderr


def test_our_warnings_are_one_line_naming_the_command(tmp_path):
    """Python's default shows `cli.py:574: UserWarning: ...` and the source line: noise to a user."""
    data = tmp_path / "data"
    assert run_cli("make-data", "--out", str(data), "--n", "3", "--size", "32").returncode == 0
    image = data / "images" / "bead_0001.png"
    grey = np.asarray(Image.open(image))
    Image.fromarray(np.stack([grey] * 3, axis=-1)).save(image)

    result = run_cli("data-stats", str(data))

    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == [
        f"optimize data-stats: warning: 1 RGB image(s) converted to grey by luminance (first: {image})"
    ]


def test_status_times_a_running_trial_in_the_workers_local_time(monkeypatch):
    """Optuna stores a trial's start as the worker's naive local time; status read it as UTC, so a running
    trial was shown 'for -32389 s' in Tokyo (and hours off anywhere but UTC)."""
    import time
    from datetime import datetime, timedelta

    from optimize.results.status import status_text

    monkeypatch.setenv("TZ", "Asia/Tokyo")
    time.tzset()
    try:
        study = optuna.create_study(direction="maximize")
        trial = optuna.trial.create_trial(state=optuna.trial.TrialState.RUNNING)
        trial.datetime_start = datetime.now() - timedelta(seconds=30)
        study.add_trial(trial)
        (line,) = [line for line in status_text(study).splitlines() if line.startswith("  trial    0")]
        seconds = int(re.search(r"for +(-?\d+) s", line).group(1))
        assert 29 <= seconds <= 60, line
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()


def test_status_shows_a_users_nan_scores_as_missing_not_as_nan():
    """A study of a user's own script storing NaN in `best_val_jaccard` and `val_object_f1`: status showed
    'val_jaccard nan  object_f1 nan' beside its value 0.4."""
    from optimize.results.status import status_text

    study = optuna.create_study(direction="maximize")
    nan = float("nan")
    study.add_trial(optuna.trial.create_trial(value=0.4, user_attrs={"best_val_jaccard": nan, "val_object_f1": nan}))
    (best,) = [line for line in status_text(study).splitlines() if line.startswith("best:")]
    assert best.startswith("best: trial 0  val_jaccard 0.4000  ") and "nan" not in best, best
    study.set_user_attr("max_trials", "lots")  # a user's own attr of that name, not our budget
    assert "budget" not in status_text(study)
    study.set_user_attr("max_trials", 30)
    assert "  budget: 1 of 30 trials (COMPLETE + PRUNED + RUNNING)" in status_text(study).splitlines()

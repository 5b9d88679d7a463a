"""The service end to end on SQLite: run, join, export, status, and Optuna's own clients reading the study."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import optuna
import pandas as pd
import pytest
from optuna.trial import TrialState

from optimize.cli import main
from optimize.results.record import read_record, stored_history
from tests.conftest import run_cli, write_tiny_study

OPTUNA_CLI = str(Path(sys.executable).parent / "optuna")


def storage_url(studies: Path, name: str = "tiny") -> str:
    return f"sqlite:///{studies / f'{name}.db'}"


def test_runs_prune_join_and_enqueue_once(finished_study):
    study, studies, first, second = finished_study
    trials = study.get_trials()
    assert len(trials) == 12
    assert {trial.number for trial in trials} == set(range(12))
    states = [trial.state for trial in trials]
    assert TrialState.PRUNED in states and TrialState.COMPLETE in states
    assert trials[0].params == {"architecture": "unet", "loss": "dice", "learning_rate": 1e-2}
    assert trials[1].params == {"architecture": "attention_unet", "loss": "combined", "learning_rate": 1e-5}
    enqueued = [trial for trial in trials if trial.user_attrs.get("enqueued")]
    assert [trial.number for trial in enqueued] == [0, 1]
    for trial in trials:
        history = stored_history(trial)
        assert "history" not in trial.user_attrs  # the dashboard lists user attrs on one unwrapped line each
        assert len(history["epoch"]) == trial.user_attrs["epochs_run"] == len(trial.intermediate_values)
        assert history["val_jaccard"] == pytest.approx(
            [trial.intermediate_values[e] for e in history["epoch"]], abs=1e-6
        )
        if trial.state == TrialState.PRUNED:
            assert read_record(trial).reason_text == f"pruned at epoch {trial.last_step}"
            assert (trial.user_attrs["reason"], trial.user_attrs["pruned_epoch"]) == ("pruned", trial.last_step)
    assert "study tiny" in first and "(2 queued, 0 finished)" in first and "(0 queued, 8 finished)" in second
    assert first.count("COMPLETE") + first.count("PRUNED") >= 8
    assert study.user_attrs["config_toml"] == (studies / "tiny.toml").read_text()
    assert study.user_attrs["data_stats"]["n_images"] == 24
    assert "optuna" in study.user_attrs["packages"]


def test_export_best_matches_database(finished_study, monkeypatch):
    study, studies, _, _ = finished_study
    monkeypatch.setenv("OPTIMIZE_STUDIES_DIR", str(studies))
    out = studies / "tiny" / "export"
    (out / "histories").mkdir(parents=True, exist_ok=True)
    (out / "histories" / "trial_9999.csv").write_text("an earlier export's history\n")
    assert main(["export-best", "--study", "tiny"]) == 0
    written = sorted(path.name for path in (out / "histories").iterdir())
    assert written == [f"trial_{trial.number:04d}.csv" for trial in study.trials]
    best = json.loads((out / "best_hyperparameters.json").read_text())
    assert best["trial_number"] == study.best_trial.number
    assert best["value"] == pytest.approx(study.best_value)
    assert best["params"] == study.best_params
    assert best["settings"]["base_filters"] == 4 and best["settings"]["loss"] == study.best_params["loss"]
    assert best["storage"] == {"kind": "sqlite", "url": storage_url(studies)}
    assert best["epochs_run"] == study.best_trial.user_attrs["epochs_run"]
    assert best["exported_at_utc"].endswith("+00:00")
    table = pd.read_csv(out / "search_results.csv")
    assert len(table) == len(study.trials)
    assert table.loc[0, "number"] == study.best_trial.number
    assert set(table["state"]) <= {"COMPLETE", "PRUNED"}
    for trial in study.trials:
        history = pd.read_csv(out / "histories" / f"trial_{trial.number:04d}.csv")
        assert list(history.columns) == ["epoch", "loss", "val_loss", "jaccard", "val_jaccard", "lr", "seconds"]
        assert len(history) == trial.user_attrs["epochs_run"]


def test_status_and_optuna_clients_read_the_study(finished_study, monkeypatch, capsys):
    study, studies, _, _ = finished_study
    monkeypatch.setenv("OPTIMIZE_STUDIES_DIR", str(studies))
    assert main(["status", "--study", "tiny"]) == 0
    text = capsys.readouterr().out
    assert f"COMPLETE {sum(t.state == TrialState.COMPLETE for t in study.trials)}" in text
    assert f"val_jaccard {study.best_value:.4f}" in text
    listed = subprocess.run(
        [OPTUNA_CLI, "trials", "--study-name", "tiny", "--storage", storage_url(studies), "-f", "json"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert len(json.loads(listed.stdout)) == 12
    best = subprocess.run(
        [OPTUNA_CLI, "best-trial", "--study-name", "tiny", "--storage", storage_url(studies), "-f", "json"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(best.stdout)["number"] == study.best_trial.number


def test_budget_stops_every_run(studies, capsys):
    write_tiny_study(studies, "capped", max_trials=3, max_epochs=2)
    assert main(["run", "--study", "capped", "--n-trials", "10"]) == 0
    first = capsys.readouterr().out
    assert "budget reached: 3 of max_trials = 3 trials; this worker stops" in first  # not its 10 trials: said
    assert main(["run", "--study", "capped", "--n-trials", "10"]) == 0
    assert "budget reached: 3 of max_trials = 3 trials; nothing to do" in capsys.readouterr().out
    study = optuna.load_study(study_name="capped", storage=storage_url(studies, "capped"))
    assert len(study.trials) == 3


def test_export_without_complete_trial_fails_clearly(studies, capsys):
    optuna.create_study(study_name="empty", storage=storage_url(studies, "empty"), direction="maximize")
    assert main(["export-best", "--study", "empty"]) == 1
    assert "has no COMPLETE trial yet" in capsys.readouterr().err


@pytest.mark.parametrize(
    "args, message",
    [
        (["run", "--study", "nosuch"], r"no study config .*nosuch.toml; studies in .*: broken, tiny"),
        (["run", "--study", "broken"], r"broken.toml \[training\]: unknown key 'max_epoch'"),
        (["run", "--study", "tiny", "--data", "/nonexistent/beads"], r"data: .*/nonexistent/beads"),
        (["export-best", "--study", "ghost"], r"no study database at .*ghost.db"),
        (["run", "--study", "tiny", "--storage", "postgresql://nobody@127.0.0.1:1/none"], r"127.0.0.1:1"),
    ],
)
def test_bad_input_is_one_line_and_nonzero(studies, args, message):
    (studies / "broken.toml").write_text("[data]\ndir = 'x'\n[training]\nmax_epoch = 3\n")
    result = run_cli(*args, env={"OPTIMIZE_STUDIES_DIR": str(studies)})
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert re.search(message, lines[0]), lines[0]


def test_library_start_up_noise_is_hidden_but_replayed_when_the_import_fails(tmp_path, monkeypatch, capfd):
    from optimize.keras_import import import_quietly

    (tmp_path / "noisy_ok.py").write_text("import os\nos.write(2, b'I0000 start-up line from C++\\n')\n")
    (tmp_path / "noisy_bad.py").write_text("import os\nos.write(2, b'why it broke\\n')\nraise ImportError('broken')\n")
    monkeypatch.syspath_prepend(str(tmp_path))

    import_quietly("noisy_ok")
    assert capfd.readouterr().err == ""
    with pytest.raises(ImportError, match="broken"):
        import_quietly("noisy_bad")
    assert "why it broke" in capfd.readouterr().err


def test_a_stop_signal_a_library_turned_into_an_import_error_stays_a_stop_signal(tmp_path, monkeypatch):
    """Keras reports an interrupted `import optree` as a missing package; the command must still say it was
    interrupted (test_cli_errors sends the real signal, which lands in such an import only sometimes)."""
    from optimize.keras_import import import_quietly

    (tmp_path / "interrupted_inside.py").write_text(
        "try:\n    raise KeyboardInterrupt()\nexcept BaseException:\n    raise ImportError('you need optree')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))

    with pytest.raises(KeyboardInterrupt):
        import_quietly("interrupted_inside")


@pytest.mark.parametrize(("backend", "loaded"), [("tensorflow", []), ("jax", ["jax"])])
def test_keras_loads_without_packages_it_never_uses_here_and_they_import_afterwards(backend, loaded):
    """`import_keras` hides scikit-learn, matplotlib, pandas and (unless it is the backend) JAX from Keras'
    start-up only; the backend still loads, and each package imports normally once Keras is in."""
    code = (
        "import json, sys\n"
        "from optimize.keras_import import import_keras\n"
        "import_keras()\n"
        "import keras\n"
        "print(json.dumps([n for n in ('jax', 'matplotlib', 'pandas', 'sklearn') if n in sys.modules]))\n"
        "print(keras.backend.backend())\n"
        "import jax, matplotlib, pandas, sklearn\n"
        "print(pandas.DataFrame({'a': [1, 2]}).shape)\n"
    )
    assert python_on(backend, code) == [json.dumps(loaded), backend, "(2, 1)"]


def test_seeding_under_jax_leaves_tensorflow_out_and_still_repeats_every_draw():
    """Keras' `set_random_seed` imports TensorFlow whenever it is installed; a trial's seeding under JAX must
    not, and must still reset Python's, NumPy's and Keras' random draws (a model's initial weights)."""
    code = (
        "import random, sys\n"
        "from optimize.keras_import import import_keras\n"
        "import_keras()\n"
        "import keras, numpy as np\n"
        "from optimize.training.train import set_random_seed\n"
        "draws = []\n"
        "for _ in range(2):\n"
        "    set_random_seed(7)\n"
        "    layer = keras.layers.Conv2D(2, 3)\n"
        "    layer.build((None, 8, 8, 1))\n"
        "    weights = float(keras.ops.sum(layer.kernel))\n"
        "    draws.append((random.random(), float(np.random.rand()), float(keras.random.uniform(())), weights))\n"
        "print(draws[0] == draws[1], 'tensorflow' in sys.modules)\n"
        "import tensorflow\n"
        "print(tensorflow.constant(2).numpy())\n"
    )
    assert python_on("jax", code) == ["True False", "2"]


def python_on(backend: str, code: str) -> list[str]:
    """The lines `code` prints in a new interpreter on `backend` (which must exit 0)."""
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout.splitlines()

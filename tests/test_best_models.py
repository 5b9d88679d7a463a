"""The best trials' models: kept as Optuna artifacts, pruned to `keep_models`, exported as `best_model.keras`
that loads in a fresh process and predicts what the trial's model predicted."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import textwrap

import optuna
import pytest
from optuna.trial import TrialState

from optimize.storage.artifacts import FileSystemArtifactStore, kept_models, model_artifacts
from tests.conftest import run_cli, write_tiny_study


def trials_by_value(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    complete = [trial for trial in study.trials if trial.state == TrialState.COMPLETE]
    return sorted(complete, key=lambda trial: (-trial.value, trial.number))


@pytest.fixture(scope="module")
def kept_study(tmp_path_factory):
    """A tiny study of 5 trials without pruning and `keep_models = 2`, run through the CLI, then exported."""
    root = tmp_path_factory.mktemp("models")
    folder = root / "studies"
    path = write_tiny_study(folder, max_epochs=2, max_trials=5)
    path.write_text(path.read_text().replace('kind = "asha"', 'kind = "none"') + "\n[artifacts]\nkeep_models = 2\n")
    env = {"OPTIMIZE_STUDIES_DIR": str(folder)}
    ran = run_cli("run", "--study", "tiny", env=env)
    assert ran.returncode == 0, ran.stderr
    exported = run_cli("export-best", "--study", "tiny", env=env)
    assert exported.returncode == 0, exported.stderr
    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{folder / 'tiny.db'}")
    return study, folder, ran.stdout, exported.stdout


def test_only_the_best_trials_keep_their_model(kept_study):
    study, folder, output, _ = kept_study
    artifacts = folder / "tiny.artifacts"
    assert f"models the 2 best kept in {artifacts} (beside tiny.db)" in output
    store = FileSystemArtifactStore(artifacts)
    ranked = trials_by_value(study)
    assert len(ranked) == 5
    kept = {trial.number for trial in ranked if kept_models(trial, store)}
    assert kept == {trial.number for trial in ranked[:2]}
    assert len(list(artifacts.iterdir())) == 2
    assert sum(bool(model_artifacts(trial)) for trial in ranked) > 2  # some were kept, then removed
    listed = optuna.artifacts.get_all_artifact_meta(ranked[0], storage=study._storage)  # Optuna's own reader
    assert [meta.filename for meta in listed] == [f"trial_{ranked[0].number:04d}_model.keras"]


def test_export_writes_the_best_model_with_its_hash(kept_study):
    study, folder, _, output = kept_study
    export = folder / "tiny" / "export"
    summary = json.loads((export / "best_hyperparameters.json").read_text())
    model = summary["model"]
    assert model["file"] == "best_model.keras" and model["trial_number"] == study.best_trial.number
    assert model["sha256"] == hashlib.sha256((export / "best_model.keras").read_bytes()).hexdigest()
    assert f"best_model.keras: the model of trial {study.best_trial.number}, sha256 {model['sha256']}" in output


def test_an_export_that_fails_leaves_the_earlier_export_whole(kept_study, tmp_path):
    """`export-best --artifacts FILE` into an earlier export deleted its best_model.keras, then failed, leaving
    best_hyperparameters.json naming the deleted file."""
    study, folder, _, _ = kept_study
    out = tmp_path / "export"
    shutil.copytree(folder / "tiny" / "export", out)
    before = {path.name: path.read_bytes() for path in out.iterdir() if path.is_file()}
    blocker = tmp_path / "not a folder"
    blocker.write_text("")
    env = {"OPTIMIZE_STUDIES_DIR": str(folder)}
    failed = run_cli("export-best", "--study", "tiny", "--out", str(out), "--artifacts", str(blocker), env=env)
    assert failed.returncode == 1 and failed.stderr.strip() == (
        f"optimize export-best: error: {blocker} (--artifacts) is a file; expected the folder of the study's kept "
        "models"
    )
    assert {path.name: path.read_bytes() for path in out.iterdir() if path.is_file()} == before


def test_the_exported_model_predicts_in_a_fresh_process_what_the_trial_predicted(kept_study, tmp_path):
    """Loaded with plain `keras.models.load_model` outside the project's folder, the model finds the same beads
    on the study's validation images as the trial did: the stored bead counts and metrics, exactly."""
    study, folder, _, _ = kept_study
    script = textwrap.dedent(
        f"""
        import json, keras
        from data import evaluate_objects
        from optimize.search.config import load_config
        from optimize.training.dataset import load_study_data
        model = keras.models.load_model({str(folder / "tiny" / "export" / "best_model.keras")!r})
        data = load_study_data(load_config({str(folder / "tiny.toml")!r}))
        probabilities = keras.ops.convert_to_numpy(model(data.val[0], training=False))
        evaluation = evaluate_objects(data.val_labels, probabilities)
        counts = [scores[0].n_pred for scores in evaluation.per_image]
        print(json.dumps({{"predicted": counts, "summary": evaluation.summary()}}))
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    best = study.best_trial
    assert loaded["predicted"] == best.system_attrs["optimize:val_counts"]["predicted"]
    assert loaded["summary"]["object_f1"] == pytest.approx(best.user_attrs["val_object_f1"], abs=1e-12)
    assert loaded["summary"]["count_error"] == pytest.approx(best.user_attrs["val_count_error"], abs=1e-12)


def test_an_unwritable_artifacts_folder_stops_the_worker_before_any_trial(tmp_path):
    folder = tmp_path / "studies"
    write_tiny_study(folder)
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    result = run_cli(
        "run", "--study", "tiny", "--artifacts", str(blocker / "models"), env={"OPTIMIZE_STUDIES_DIR": str(folder)}
    )
    assert result.returncode == 2
    line = result.stderr.strip()
    assert "\n" not in line and "Traceback" not in line
    assert f"artifacts folder {blocker / 'models'} (--artifacts) is under {blocker}, which is a file" in line
    assert not (folder / "tiny.db").exists()


def test_a_run_that_cannot_reach_its_database_leaves_no_artifacts_folder(tmp_path):
    """The folder is checked writable at start but made with the first kept model: a refused run leaves nothing."""
    folder = tmp_path / "studies"
    write_tiny_study(folder)
    unreachable = "postgresql+psycopg://postgres@127.0.0.1:1/test"
    result = run_cli("run", "--study", "tiny", "--storage", unreachable, env={"OPTIMIZE_STUDIES_DIR": str(folder)})
    assert result.returncode == 2, result.stderr
    assert "cannot open study storage" in result.stderr
    assert sorted(path.name for path in folder.iterdir()) == ["tiny.toml"]


def test_keep_models_zero_keeps_none_and_export_says_why(tmp_path):
    folder = tmp_path / "studies"
    path = write_tiny_study(folder, max_epochs=1, max_trials=2)
    path.write_text(path.read_text() + "\n[artifacts]\nkeep_models = 0\n")
    env = {"OPTIMIZE_STUDIES_DIR": str(folder)}
    given = tmp_path / "models"
    ran = run_cli("run", "--study", "tiny", "--artifacts", str(given), env=env)
    assert ran.returncode == 0, ran.stderr
    assert "models the" not in ran.stdout and not (folder / "tiny.artifacts").exists() and not given.exists()
    assert f"note: --artifacts {given} unused: [artifacts] keep_models = 0 keeps no model" in ran.stdout
    exported = run_cli("export-best", "--study", "tiny", env=env)
    assert exported.returncode == 0, exported.stderr
    assert "no best_model.keras: trial " in exported.stdout
    summary = json.loads((folder / "tiny" / "export" / "best_hyperparameters.json").read_text())
    assert summary["model"]["file"] is None and "keep_models = 0" in summary["model"]["reason"]
    assert not (folder / "tiny" / "export" / "best_model.keras").exists()


def test_a_database_server_without_a_shared_folder_says_the_models_stay_on_this_node(tmp_path, postgres_url):
    folder = tmp_path / "studies"
    write_tiny_study(folder, max_epochs=1, max_trials=1)
    ran = run_cli("run", "--study", "tiny", "--storage", postgres_url, env={"OPTIMIZE_STUDIES_DIR": str(folder)})
    assert ran.returncode == 0, ran.stderr
    assert f"models the 3 best kept in {folder / 'tiny.artifacts'} (this node's studies folder); a folder on " in (
        ran.stdout
    )
    shared = tmp_path / "shared"
    again = run_cli(
        "run",
        "--study",
        "tiny",
        "--storage",
        postgres_url,
        env={"OPTIMIZE_STUDIES_DIR": str(folder), "OPTIMIZE_ARTIFACTS": str(shared)},
    )
    assert again.returncode == 0, again.stderr
    assert f"models the 3 best kept in {shared} ($OPTIMIZE_ARTIFACTS)\n" in again.stdout

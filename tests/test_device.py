"""A run says where its trials train, and a study sized for a GPU does not start on a CPU unasked."""

from __future__ import annotations

import optuna

from tests.conftest import run_cli, write_tiny_study


def gpu_sized_study(tmp_path):
    studies = tmp_path / "studies"
    path = write_tiny_study(studies, max_trials=1, max_epochs=1)
    path.write_text(path.read_text().replace("run_eagerly = true", 'run_eagerly = true\nprecision = "mixed_bfloat16"'))
    return studies, path


def test_a_gpu_sized_study_stops_on_a_cpu_with_an_estimate(tmp_path):
    studies, path = gpu_sized_study(tmp_path)
    url = f"sqlite:///{tmp_path / 'tiny.db'}"
    result = run_cli("run", "--study", "tiny", "--storage", url, env={"OPTIMIZE_STUDIES_DIR": str(studies)})
    assert result.returncode == 2, result.stdout + result.stderr
    error = result.stderr.strip().splitlines()
    assert len(error) == 1, result.stderr
    assert error[0].startswith(f"optimize run: error: {path}: the study is sized for a GPU (precision mixed_bfloat16)")
    assert "one training step took" in error[0] and "an epoch of 18 images takes about" in error[0]
    assert error[0].endswith("pass --allow-cpu to train on the CPU anyway")
    assert "device CPU (no GPU visible to the tensorflow backend); timing one training step" in result.stdout
    assert optuna.get_all_study_names(storage=url) == []


def test_allow_cpu_runs_it_and_says_so(tmp_path):
    studies, _ = gpu_sized_study(tmp_path)
    url = f"sqlite:///{tmp_path / 'tiny.db'}"
    result = run_cli(
        "run", "--study", "tiny", "--storage", url, "--allow-cpu", env={"OPTIMIZE_STUDIES_DIR": str(studies)}
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert (
        "device CPU (no GPU visible to the tensorflow backend); the study is sized for a GPU "
        "(precision mixed_bfloat16), allowed by --allow-cpu" in result.stdout
    )
    assert "timing one training step" not in result.stdout
    trials = optuna.load_study(study_name="tiny", storage=url).trials
    assert [trial.state.is_finished() for trial in trials].count(True) == 1

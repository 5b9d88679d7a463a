"""A run says where its trials train, and a study sized for a GPU does not start on a CPU unasked."""

from __future__ import annotations

import io
import tomllib

import optuna
import pytest

from tests.conftest import TINY_STUDY, run_cli, write_tiny_study


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


def test_a_worker_that_sees_several_gpus_says_it_trains_on_the_first(tmp_path, monkeypatch):
    """Keras trains on the first GPU it sees: `optimize run` without `--gpus` on a node of 4 GPUs uses one."""
    from optimize.search.config import load_config
    from optimize.training.dataset import load_study_data
    from optimize.training.device_check import check_device, several_gpus_note

    studies = tmp_path / "studies"
    write_tiny_study(studies, max_trials=1, max_epochs=1)
    monkeypatch.setenv("OPTIMIZE_STUDIES_DIR", str(studies))
    config = load_config("tiny")
    data = load_study_data(config, None)
    for gpus in ([], ["GPU:0"], ["GPU:0", "GPU:1", "GPU:2", "GPU:3"]):
        monkeypatch.setattr("optimize.training.device_check.training_gpus", lambda gpus=gpus: gpus)
        stream = io.StringIO()
        assert check_device(config, data, allow_cpu=False, stream=stream) == gpus
        assert stream.getvalue().startswith("device GPU: GPU:0" if gpus else "device CPU"), stream.getvalue()
        asked = io.StringIO()
        check_device(config, data, allow_cpu=True, stream=asked)
        reason = "" if gpus else ": the study is not sized for a GPU"
        assert asked.getvalue().splitlines()[0].endswith(f"  (--allow-cpu is not needed{reason})"), asked.getvalue()
    assert several_gpus_note([]) is None and several_gpus_note(["GPU:0"]) is None
    assert several_gpus_note(["GPU:0", "GPU:1", "GPU:2", "GPU:3"]) == (
        "note: this worker trains on the first of the 4 GPUs it sees; --gpus all-visible runs one worker per GPU "
        "(--trials-per-gpu 2: two)"
    )


def test_a_timing_step_that_runs_out_of_memory_is_one_line(tmp_path, monkeypatch):
    """A model too large for the CPU (base_filters 100000000) ended the CPU check in a 50-line TensorFlow traceback."""
    from optimize.errors import UsageError
    from optimize.search.config import load_config
    from optimize.training.dataset import load_study_data
    from optimize.training.device_check import check_device
    from optimize.training.out_of_memory import backend_out_of_memory_error

    studies, path = gpu_sized_study(tmp_path)
    monkeypatch.setenv("OPTIMIZE_STUDIES_DIR", str(studies))
    config = load_config("tiny")

    def too_large(config, data):
        raise backend_out_of_memory_error("shape[3,3,100000000,100000000]")

    monkeypatch.setattr("optimize.training.device_check.measure_step", too_large)
    with pytest.raises(UsageError) as refused:
        check_device(config, load_study_data(config, None), allow_cpu=False, stream=io.StringIO())
    assert str(refused.value) == (
        f"{path}: the study is sized for a GPU (precision mixed_bfloat16) and no GPU is visible (no GPU visible to "
        "the tensorflow backend); on this CPU one training step of its first model ran out of memory; run on a GPU "
        "node"
    )


@pytest.mark.parametrize(
    "training, search, expected",
    [
        ("base_filters = 4", "", []),
        ("", "", ["base_filters 64"]),
        ("", "base_filters = [4, 64]", []),
        ("", "base_filters = [32, 64]", ["base_filters 32 and up (searched)"]),
        ("", "base_filters = { low = 32, high = 64, step = 32 }", ["base_filters 32 and up (searched)"]),
        ('base_filters = 4\nprecision = "mixed_bfloat16"', "", ["precision mixed_bfloat16"]),
        ("base_filters = 4", 'precision = ["float32", "mixed_bfloat16"]', []),
        (
            "base_filters = 4",
            'precision = ["mixed_float16", "mixed_bfloat16"]',
            ["precision mixed_float16, mixed_bfloat16"],
        ),
    ],
)
def test_a_searched_setting_is_gpu_sized_only_when_its_smallest_value_is(tmp_path, training, search, expected):
    """A study searching base_filters [4, 64] trains small models too: the CPU is not refused for the 64 that the
    search replaces (it was: "sized for a GPU (base_filters 64)", a value the user never gave)."""
    from optimize.search.config import parse_config
    from optimize.training.device_check import gpu_sized

    text = TINY_STUDY.format(max_epochs=1, max_trials=1, heartbeat=60, grace=120)
    text = text.replace("base_filters = 4", training).replace("[search]\n", f"[search]\n{search}\n")
    config = parse_config(tomllib.loads(text), path=tmp_path / "tiny.toml", text=text)
    assert gpu_sized(config, image_side=32) == expected
    assert gpu_sized(config, image_side=512) == ["512x512 images", *expected]

"""`optimize new-study NAME --data DIR`: a study planned from the data, each setting with its reason.

Dense synthetic beads and a sparse set of few, larger objects must get the plans the rules in
`optimize.search.plans` promise; the users' own data statistics must get back the users' study; the
written file loads and runs; an existing file is kept without --force; bad input is one line.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import optuna
import pytest
from PIL import Image

from data import make_microbeads, write_microbeads
from optimize.search.config import load_config
from optimize.search.plans import (
    DENSE_LEARNING_RATE,
    DENSE_OBJECTS_PER_IMAGE,
    SPARSE_LEARNING_RATE,
    SPARSE_OBJECTS_PER_IMAGE,
    Fingerprint,
    PlanError,
    Target,
    fingerprint,
    learning_rate_range,
    make_plan,
)
from tests.conftest import ROOT, run_cli

SIZE = 64
N_IMAGES = 16


def write_pngs(folder: Path, images: np.ndarray, masks: np.ndarray) -> Path:
    """Images and masks as `data.write_microbeads` writes them (8-bit grey, masks 0/255)."""
    for sub in ("images", "masks"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    for index, (image, mask) in enumerate(zip(images, masks, strict=True)):
        name = f"img_{index:03d}.png"
        Image.fromarray(np.round(image[..., 0] * 255).astype(np.uint8)).save(folder / "images" / name)
        Image.fromarray((mask[..., 0] * 255).astype(np.uint8)).save(folder / "masks" / name)
    return folder


@pytest.fixture(scope="module")
def data_sets(tmp_path_factory) -> dict[str, Path]:
    """A dense set (the users' ~109 beads per image) and a sparse one (1 to 5 larger objects per image)."""
    root = tmp_path_factory.mktemp("plan_data")
    dense = write_microbeads(root / "dense", N_IMAGES, size=SIZE, seed=3)
    images, masks = make_microbeads(N_IMAGES, SIZE, seed=4, mean_beads=3, min_beads=1, max_beads=5, radius=5.0)
    sparse = write_pngs(root / "sparse", images, masks)
    return {"dense": dense, "sparse": sparse}


@pytest.fixture
def studies(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "studies"
    monkeypatch.setenv("OPTIMIZE_STUDIES_DIR", str(folder))
    monkeypatch.delenv("OPTIMIZE_STORAGE", raising=False)
    monkeypatch.delenv("KERAS_BACKEND", raising=False)
    return folder


def new_study(name: str, data: Path, *extra: str) -> subprocess.CompletedProcess:
    return run_cli("new-study", name, "--data", str(data), "--device", "cpu", *extra)


def test_the_learning_rate_rule_goes_through_the_users_two_data_sets():
    sparse_centre, sparse_low, sparse_high = learning_rate_range(SPARSE_OBJECTS_PER_IMAGE)
    dense_centre, dense_low, dense_high = learning_rate_range(DENSE_OBJECTS_PER_IMAGE)
    assert sparse_centre == pytest.approx(SPARSE_LEARNING_RATE)
    assert dense_centre == pytest.approx(DENSE_LEARNING_RATE)
    assert (dense_low, dense_high) == (1e-5, 5e-4)  # studies/microbead512.toml's range
    assert (sparse_low, sparse_high) == (1e-4, 5e-3)
    assert learning_rate_range(1000)[0] < dense_centre < learning_rate_range(20)[0] < sparse_centre
    assert learning_rate_range(0.5)[0] == SPARSE_LEARNING_RATE  # never above what the users trained


def test_label_masks_count_their_labels_so_touching_beads_stay_two(tmp_path):
    for kind, (first, second) in {"labels": (1, 2), "binary": (255, 255)}.items():
        for sub in ("images", "masks"):
            (tmp_path / kind / sub).mkdir(parents=True)
        for index in range(3):
            mask = np.zeros((32, 32), np.uint8)
            mask[4:10, 4:10], mask[4:10, 10:16] = first, second  # two touching beads
            Image.fromarray(mask).save(tmp_path / kind / "masks" / f"m{index}.png")
            Image.fromarray(np.full((32, 32), 100, np.uint8)).save(tmp_path / kind / "images" / f"m{index}.png")
    labels, binary = fingerprint(tmp_path / "labels"), fingerprint(tmp_path / "binary")
    assert (labels.label_masks, labels.objects_mean, labels.area_mean) == (True, 2.0, 36.0)
    assert (binary.label_masks, binary.objects_mean, binary.area_mean) == (False, 1.0, 72.0)
    assert labels.foreground_fraction == binary.foreground_fraction == 72 / 1024
    assert ("masks", "label images (touching beads kept apart)") in labels.rows()


def users_fingerprint(**changes) -> Fingerprint:
    """The users' microbeads as their data report gives them: 73 images of 512², 109.4 beads (12 to 254)."""
    values = {
        "folder": Path("/data/dataset_shrunk_masks"),
        "n_images": 73,
        "height": 512,
        "width": 512,
        "objects_mean": 109.4,
        "objects_median": 100.0,
        "objects_min": 12,
        "objects_max": 254,
        "objects_std": 60.0,
        "foreground_fraction": 0.115,
        "area_mean": 276.0,
        "area_median": 270.0,
        "label_masks": False,
    }
    return Fingerprint(**(values | changes))


def test_the_users_data_on_a_gpu_gets_the_users_study(tmp_path):
    plan = make_plan("users", users_fingerprint(), Target("gpu", "jax", 80.0, "test"), "../dataset_shrunk_masks")
    path = plan.write(tmp_path / "users.toml")
    config = load_config(str(path))
    search = {param.name: param for param in config.search.params}
    assert (search["learning_rate"].low, search["learning_rate"].high, search["learning_rate"].log) == (
        1e-5,
        5e-4,
        True,
    )
    assert search["batch_size"].choices == (4, 8, 16, 32)
    assert search["dropout"].choices == (0.0, 0.1, 0.2, 0.3)
    assert len(search["loss"].choices) == 6 and len(search["architecture"].choices) == 4
    training = config.training
    assert (training.base_filters, training.depth, training.max_epochs, training.patience) == (64, 4, 100, 30)
    assert (training.precision, training.jit_compile) == ("mixed_bfloat16", True)
    assert (config.pruner.kind, config.pruner.min_resource, config.pruner.reduction_factor) == ("asha", 25, 2)
    assert (config.data.image_size, config.data.val_fraction, config.budget.max_trials) == (512, 0.15, 120)
    assert len(config.enqueue) == 3  # all three of the users' known configurations fit
    assert {entry["learning_rate"] for entry in config.enqueue} == {2e-4, 5e-5, 1e-4}


def test_a_sparse_set_of_large_objects_leaves_the_dense_warm_starts_out(tmp_path):
    sparse = users_fingerprint(
        n_images=134, height=256, width=256, objects_mean=2.5, objects_median=2, objects_min=1, objects_max=5,
        objects_std=1.0, foreground_fraction=0.12, area_mean=3000.0, area_median=2800.0,
    )  # fmt: skip
    plan = make_plan("mito", sparse, Target("gpu", "tensorflow", 80.0, "test"), "../mito")
    assert plan.value("search", "learning_rate") == {"low": 1e-4, "high": 5e-3, "log": True}
    assert plan.value("search", "loss") == ["dice", "focal", "combined"]
    assert plan.value("search", "dropout") == [0.0, 0.1, 0.2]
    assert plan.value("search", "batch_size") == [4, 8, 16]
    assert plan.value("data", "val_fraction") == 0.10  # 134 images, as the users' mitochondria
    assert all(start.left_out for start in plan.warm_starts)
    assert "dropout 0.3 not in [0.0, 0.1, 0.2]" in plan.warm_starts[0].left_out
    text = plan.toml()
    assert "\n[[enqueue]]" not in text and "Left out: their best at 512x512: val Jaccard 0.164 (dropout" in comments(
        text
    )
    load_config(str(plan.write(tmp_path / "mito.toml")))


def test_gpu_memory_bounds_the_batch_size():
    """At 512², base 64, bfloat16 a trial needs ~17 GiB at batch 16: a 40 GiB GPU shared by two trials takes 16."""
    plan = make_plan("small_gpu", users_fingerprint(), Target("gpu", "jax", 40.0, "test"), "../d")
    assert plan.value("search", "batch_size") == [4, 8, 16]
    assert any(start.left_out == "batch_size 32 not in [4, 8, 16]" for start in plan.warm_starts)


def test_an_image_too_large_for_a_trials_share_of_the_gpu_is_refused():
    """At 4096², base 64, one image needs more than a trial's share of an 80 GiB GPU: no batch size fits (the
    plan used to write batch_size = 1 beside its own estimate of 0)."""
    huge = users_fingerprint(height=4096, width=4096, area_mean=17_664.0, area_median=17_280.0)
    with pytest.raises(
        PlanError, match=r"one 4096x4096 image needs ~\d+ GiB .* plan for smaller images with --image-size"
    ):
        make_plan("huge", huge, Target("gpu", "jax", 80.0, "test"), "../d")


def comments(text: str) -> str:
    """The study file's comments as one line (the reasons are wrapped)."""
    return " ".join(line.removeprefix("# ") for line in text.splitlines() if line.startswith("# "))


def planned(studies: Path, name: str) -> tuple[dict, str]:
    text = (studies / f"{name}.toml").read_text(encoding="utf-8")
    return tomllib.loads(text), text


def test_dense_and_sparse_data_get_different_plans(data_sets, studies):
    for name in ("dense", "sparse"):
        done = new_study(name, data_sets[name])
        assert done.returncode == 0, done.stderr
        assert "setting" in done.stdout and "| reason" in done.stdout
        assert f"wrote {studies / name}.toml" in done.stdout
    dense, dense_text = planned(studies, "dense")
    sparse, sparse_text = planned(studies, "sparse")
    dense_lr, sparse_lr = dense["search"]["learning_rate"], sparse["search"]["learning_rate"]
    assert (dense_lr["low"], dense_lr["high"]) == (1e-5, 5e-4)
    assert (sparse_lr["low"], sparse_lr["high"]) == (1e-4, 5e-3)
    assert math.isclose(sparse_lr["high"] / dense_lr["high"], 10)
    assert "tversky" in dense["search"]["loss"] and "tversky" not in sparse["search"]["loss"]
    assert 0.3 in dense["search"]["dropout"] and 0.3 not in sparse["search"]["dropout"]
    # The reasons are in the file, as comments above their settings.
    assert "objects/image: dense; the users' dense beads (109.4/image) needed lr 1e-4" in comments(dense_text)
    assert "objects/image: sparse" in sparse_text and "# Warm starts:" in sparse_text
    for text in (dense_text, sparse_text):
        lines = text.splitlines()
        headers = [index for index, line in enumerate(lines) if line.startswith("[") and not line.startswith("[[")]
        assert len(headers) == 6 and all(lines[index + 1].startswith("# ") for index in headers)
    # A CPU plan is small and cheap, and the users' best at 512² warm-starts the dense study.
    assert (dense["training"]["base_filters"], dense["training"]["depth"]) == (8, 3)
    assert dense["training"]["max_epochs"] <= 30 and dense["training"]["precision"] == "float32"
    best_512 = {"architecture": "unet", "learning_rate": 2e-4, "batch_size": 4, "dropout": 0.3, "loss": "combined"}
    assert dense["enqueue"] == [best_512]


def test_the_written_study_loads_and_runs(data_sets, studies):
    import optuna

    assert new_study("beads", data_sets["dense"]).returncode == 0
    config = load_config("beads")
    assert config.data_dir() == data_sets["dense"].resolve()
    ran = run_cli("run", "--study", "beads", "--n-trials", "1", timeout=600)
    assert ran.returncode == 0, ran.stdout[-2000:] + ran.stderr[-2000:]
    study = optuna.load_study(study_name="beads", storage=f"sqlite:///{studies / 'beads.db'}")
    (trial,) = study.trials
    assert trial.state == optuna.trial.TrialState.COMPLETE
    assert trial.params["learning_rate"] == 2e-4 and trial.params["loss"] == "combined"  # the enqueued warm start


def test_an_existing_study_file_is_kept_without_force(data_sets, studies):
    assert new_study("kept", data_sets["dense"]).returncode == 0
    path = studies / "kept.toml"
    path.write_text(path.read_text(encoding="utf-8") + "# edited by hand\n", encoding="utf-8")
    before = path.read_bytes()
    again = new_study("kept", data_sets["sparse"])
    assert again.returncode != 0
    expected = f"optimize new-study: error: {path} already exists; pass --force to overwrite it (it is left unchanged)"
    assert again.stderr.strip() == expected
    assert path.read_bytes() == before
    forced = new_study("kept", data_sets["sparse"], "--force")
    assert forced.returncode == 0, forced.stderr
    assert "objects/image: sparse" in path.read_text(encoding="utf-8")
    assert forced.stderr == "" and "--force" not in forced.stdout


def test_force_says_when_there_is_nothing_to_overwrite_and_when_the_study_already_has_trials(data_sets, studies):
    """`--force` over a study that has trials said nothing, and its workers were then refused for the changed
    settings; `--force` with no file to overwrite was silently ignored."""
    fresh = new_study("fresh", data_sets["dense"], "--force")
    assert fresh.returncode == 0, fresh.stderr
    assert fresh.stdout.splitlines()[-1] == "(--force: there was no fresh.toml to overwrite)"
    forced = new_study("fresh", data_sets["sparse"], "--force")
    assert forced.returncode == 0 and forced.stderr == "" and "--force" not in forced.stdout

    study = optuna.create_study(study_name="fresh", storage=f"sqlite:///{studies / 'fresh.db'}", direction="maximize")
    for value in (0.2, 0.3):
        study.add_trial(optuna.trial.create_trial(value=value))
    before = (studies / "fresh.db").read_bytes()
    forced = new_study("fresh", data_sets["dense"], "--force")
    assert forced.returncode == 0, forced.stderr
    assert forced.stderr.strip() == (
        "note: the study fresh already holds 2 trials run with the file this one replaced; if the new file changes "
        "its data, training or search, `optimize run --study fresh` refuses to join them: start over under a new "
        "name with `--new-study NAME` on that command"
    )
    assert (studies / "fresh.db").read_bytes() == before


def test_bad_input_is_one_line(data_sets, studies, tmp_path):
    missing = new_study("x", tmp_path / "nowhere")
    assert missing.returncode == 1 and not (studies / "x.toml").exists()
    assert missing.stderr.count("\n") == 1 and "nowhere does not exist" in missing.stderr

    bad_name = new_study("../x", data_sets["dense"])
    assert bad_name.returncode == 2 and "expected a study name" in bad_name.stderr

    empty = tmp_path / "empty"
    write_pngs(empty, np.zeros((3, 32, 32, 1)), np.zeros((3, 32, 32, 1)))
    no_beads = new_study("x", empty)
    assert no_beads.returncode == 1 and "masks hold no object" in no_beads.stderr and "Traceback" not in no_beads.stderr

    # Both were written, and `optimize run` then refused them.
    full = tmp_path / "full"
    write_pngs(full, np.zeros((3, 32, 32, 1)), np.ones((3, 32, 32, 1)))
    all_bead = new_study("x", full)
    assert all_bead.returncode == 1 and all_bead.stderr.count("\n") == 1, all_bead.stderr
    assert "every mask is entirely bead (no background pixel)" in all_bead.stderr
    one = tmp_path / "one"
    write_pngs(one, *make_microbeads(1, 32, seed=1))
    single = new_study("x", one)
    assert single.returncode == 1 and single.stderr.count("\n") == 1, single.stderr
    assert "1 image; a study needs at least 2" in single.stderr
    assert not (studies / "x.toml").exists()

    odd = tmp_path / "odd"
    images, masks = make_microbeads(4, 30, seed=1)
    write_pngs(odd, images, masks)
    refused = new_study("odd", odd)
    assert refused.returncode == 1 and "fit no U-Net" in refused.stderr and "--image-size" in refused.stderr
    resized = new_study("odd", odd, "--image-size", "32")
    assert resized.returncode == 0, resized.stderr
    assert planned(studies, "odd")[0]["data"]["image_size"] == 32


def test_planning_never_loads_keras(data_sets, tmp_path):
    code = (
        "import sys; from optimize.cli import main; "
        f"code = main(['new-study', 'k', '--data', {str(data_sets['sparse'])!r}, '--device', 'gpu']); "
        "heavy = [name for name in ('keras', 'tensorflow', 'jax') if name in sys.modules]; "
        "assert code == 0 and not heavy, heavy"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "OPTIMIZE_STUDIES_DIR": str(tmp_path / "studies")},
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert 'precision = "mixed_bfloat16"' in (tmp_path / "studies" / "k.toml").read_text(encoding="utf-8")

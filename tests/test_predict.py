"""Tests for using a trained model: `.keras` files loaded in fresh processes, tiled prediction, `optimize predict`.

The load tests save real compiled models (every loss of the registry, every architecture and norm, and one
trial's checkpoint written by the trainer), then load them in a new Python process started outside the
repository, on TensorFlow and on JAX, and compare its predictions with the saving process's.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest
import tifffile
from PIL import Image

import losses
import models
from data import make_microbeads, write_microbeads
from data._loader import read_image
from optimize.cli import main
from optimize.inference import (
    find_beads,
    load_model,
    predict_folder,
    predict_tiled,
    tile_starts,
    tile_weights,
    write_portable_model,
)
from optimize.inference.portable import file_sha256
from optimize.search.settings import TrainSettings
from optimize.training.train import train
from tests.conftest import run_cli

SIZE = 32


def tiny_unet(architecture: str = "unet", norm: str = "batch") -> keras.Model:
    return models.build(architecture, input_shape=(SIZE, SIZE, 1), base_filters=4, depth=2, norm=norm)


# --- saving and loading in a fresh process ---------------------------------------------------------------


@pytest.fixture(scope="module")
def saved_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One compiled, trained model per loss (architectures and norms in turn) and one trial checkpoint, each
    saved as `NAME.keras` with a portable copy `NAME.portable.keras`; `expected.npz` holds the validation
    images, their masks and each model's predictions, `evaluation.json` each model's evaluation."""
    folder = tmp_path_factory.mktemp("saved models")
    images, masks = make_microbeads(12, SIZE, seed=3)
    x_train, y_train, x_val, y_val = images[:8], masks[:8], images[8:], masks[8:]
    expected: dict[str, np.ndarray] = {"x": x_val, "y": y_val}
    evaluation = {}
    for index, loss in enumerate(losses.LOSS_NAMES):
        keras.utils.set_random_seed(index)
        architecture = models.ARCHITECTURES[index % len(models.ARCHITECTURES)]
        model = tiny_unet(architecture, models.NORMS[index % len(models.NORMS)])
        model.compile(
            optimizer=keras.optimizers.Adam(1e-2), loss=losses.get(loss), metrics=losses.metrics(), run_eagerly=True
        )
        model.fit(x_train, y_train, batch_size=4, epochs=1, verbose=0)
        model.save(folder / f"{loss}.keras")
        expected[loss] = model.predict(x_val, verbose=0)
        evaluation[loss] = model.evaluate(x_val, y_val, batch_size=4, verbose=0, return_dict=True)

    settings = TrainSettings(
        architecture="attention_resunet",
        base_filters=4,
        depth=2,
        loss="combined_tversky",
        batch_size=4,
        max_epochs=2,
        schedule="cosine",
        clipnorm=1.0,
        run_eagerly=True,
    )
    train(settings, (x_train, y_train), (x_val, y_val), save_path=folder / "trial.keras")
    trial_model = load_model(folder / "trial.keras")
    expected["trial"] = trial_model.predict(x_val, verbose=0)
    evaluation["trial"] = trial_model.evaluate(x_val, y_val, batch_size=4, verbose=0, return_dict=True)

    for name in [*losses.LOSS_NAMES, "trial"]:
        sha = write_portable_model(folder / f"{name}.keras", folder / f"{name}.portable.keras")
        assert sha == file_sha256(folder / f"{name}.portable.keras")
    np.savez(folder / "expected.npz", **expected)
    (folder / "evaluation.json").write_text(json.dumps(evaluation))
    return folder


PLAIN_KERAS_CHILD = """
import sys
import keras
import numpy as np

expected = np.load("{folder}/expected.npz")
names = [name for name in expected.files if name not in ("x", "y")]
for name in names:
    copies = [("{folder}/" + name + ".portable.keras", True), ("{folder}/" + name + ".keras", False)]
    for path, compile in copies[: {files_per_model}]:
        model = keras.models.load_model(path, compile=compile)
        predicted = keras.ops.convert_to_numpy(model(expected["x"], training=False))
        np.testing.assert_allclose(predicted, expected[name], atol={atol}, rtol=0)
ours = sorted(m for m in sys.modules if m.split(".")[0] in ("losses", "models", "data", "optimize"))
print(keras.backend.backend(), len(names), "models equal; imported of ours:", ours)
"""

REGISTERED_CHILD = """
import json
import keras
import numpy as np
import losses

expected = np.load("{folder}/expected.npz")
evaluation = json.loads(open("{folder}/evaluation.json").read())
evaluation = {{name: evaluation[name] for name in {restored}}}
for name, scores in evaluation.items():
    model = keras.models.load_model("{folder}/" + name + ".keras", custom_objects=losses.CUSTOM_OBJECTS)
    assert type(model.loss).__name__ == "RegisteredLoss", model.loss
    assert model.loss.loss == (name if name != "trial" else "combined_tversky"), model.loss
    again = model.evaluate(expected["x"], expected["y"], batch_size=4, verbose=0, return_dict=True)
    metrics = model.metrics[-1].metrics
    assert [(m.name, m._direction) for m in metrics] == [("jaccard", "up"), ("iou_at_0.5", "up")], metrics
    assert set(again) == set(scores), (again, scores)
    for key, value in scores.items():
        np.testing.assert_allclose(again[key], value, rtol={rtol}, atol={atol}, err_msg=name + " " + key)
    if name == "trial" and {fit}:  # the optimizer and its schedule come back too: training goes on
        model.fit(expected["x"], expected["y"], batch_size=4, epochs=1, verbose=0)
print(keras.backend.backend(), len(evaluation), "compiled models restored")
"""


CHILD_SETTINGS = {
    "tensorflow": {
        "atol": 1e-6,
        "rtol": 1e-5,
        "files_per_model": 2,
        "restored": [*losses.LOSS_NAMES, "trial"],
        "fit": True,
    },
    "jax": {"atol": 1e-5, "rtol": 1e-4, "files_per_model": 1, "restored": ["combined", "trial"], "fit": False},
}
"""The models are saved on TensorFlow: reloaded there they predict the same to float32 round-off; JAX's own
convolution kernels differ from TensorFlow's by up to about 2e-6 in these probabilities. JAX, slower to start
each model, loads only the portable copies (TensorFlow also loads the originals without their compile config)
and restores the loss and metrics of two models (TensorFlow of all, and trains the trial's on, optimizer
restored; restoring is the same on every backend)."""


def run_children(codes: list[str], folder: Path, backend: str) -> list[str]:
    """`codes` in turn in one new interpreter started in an empty folder outside the repository, on `backend`;
    the last line each printed. One interpreter for all: JAX compiles every weight initializer's shape
    once per process, seconds per model."""
    cwd = folder / f"cwd-{backend}"
    cwd.mkdir(exist_ok=True)
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3"}
    env.pop("PYTHONPATH", None)
    code = "\n".join(textwrap.dedent(code.format(folder=folder, **CHILD_SETTINGS[backend])) for code in codes)
    result = subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr[-4000:]
    return result.stdout.strip().splitlines()[-len(codes) :]


@pytest.mark.parametrize("backend", ["tensorflow", "jax"])
def test_plain_keras_predicts_the_same_then_compiled_models_restore_loss_and_metrics(saved_models, backend):
    plain, registered = run_children([PLAIN_KERAS_CHILD, REGISTERED_CHILD], saved_models, backend)
    assert plain == f"{backend} {len(losses.LOSS_NAMES) + 1} models equal; imported of ours: []"
    assert registered == f"{backend} {len(CHILD_SETTINGS[backend]['restored'])} compiled models restored"


def test_portable_copy_keeps_everything_but_the_compile_config(saved_models, tmp_path):
    import zipfile

    with (
        zipfile.ZipFile(saved_models / "dice.keras") as original,
        zipfile.ZipFile(saved_models / "dice.portable.keras") as copy,
    ):
        assert original.namelist() == copy.namelist()
        for name in original.namelist():
            if name != "config.json":
                assert original.read(name) == copy.read(name)
        config, copied = (json.loads(archive.read("config.json")) for archive in (original, copy))
    assert config["compile_config"]["loss"]["registered_name"] == "microbead>RegisteredLoss"
    assert copied == {**config, "compile_config": None}
    not_a_model = tmp_path / "not_a_model.keras"
    not_a_model.write_text("hello")
    with pytest.raises(ValueError, match="not_a_model.keras is not a .keras file"):
        write_portable_model(not_a_model, tmp_path / "copy.keras")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["not_a_model.keras"]


def test_loss_objects_round_trip_through_their_config():
    for name in losses.LOSS_NAMES:
        loss = losses.get(name)
        config = json.loads(json.dumps(keras.saving.serialize_keras_object(loss)))
        again = keras.saving.deserialize_keras_object(config)
        assert again.loss == name and again.params == loss.params
        y, p = make_microbeads(2, 16, seed=1)[1], np.random.default_rng(0).random((2, 16, 16, 1)).astype("float32")
        assert float(again(y, p)) == float(loss(y, p))


# --- tiling ------------------------------------------------------------------------------------------------


def test_tile_starts_cover_the_axis_with_the_last_tile_flush():
    assert tile_starts(96, 32, 8) == [0, 24, 48, 64]
    assert tile_starts(100, 32, 0) == [0, 32, 64, 68]
    assert tile_starts(32, 32, 8) == [0]
    assert tile_starts(20, 32, 8) == [0]
    assert tile_starts(33, 32, 31) == [0, 1]
    for length, tile, overlap in [(96, 32, 8), (1000, 64, 16), (65, 64, 0), (500, 48, 47)]:
        starts = tile_starts(length, tile, overlap)
        assert starts[-1] + tile == length
        assert all(0 < b - a <= tile - overlap for a, b in zip(starts, starts[1:], strict=False))
    with pytest.raises(ValueError, match="overlap must be in 0..31"):
        tile_starts(96, 32, 32)
    weights = tile_weights(32, 32, 8)
    assert weights.min() > 0 and weights[8:24, 8:24].min() == 1 and weights[0, 0] < weights[0, 8]


@pytest.mark.parametrize("shape", [(96, 96), (100, 75), (20, 20), (32, 32), (32, 70), (1, 40)])
def test_tiles_put_back_together_give_the_image(shape):
    """A 'model' returning its input: the blended tiles must be the image, for any size and overlap."""
    image = np.random.default_rng(0).random((*shape, 1)).astype(np.float32)
    for overlap in (0, 5, 8):
        result = predict_tiled(image, lambda tiles: tiles, (32, 32), overlap, batch_size=3)
        np.testing.assert_allclose(result.probabilities, image[..., 0], atol=1e-7, rtol=0)


def test_tiles_are_padded_to_a_power_of_two_not_to_the_batch_size():
    """An image of 4 tiles with --batch-size 1024 was predicted as a batch of 1024 tiles, 1020 of them zeros."""
    image = np.random.default_rng(2).random((64, 96, 1)).astype(np.float32)  # 2 x 3 tiles of 32
    for batch_size, shapes in ((1024, [8]), (4, [4, 2]), (5, [5, 1]), (1, [1] * 6)):
        seen = []
        result = predict_tiled(
            image, lambda tiles, seen=seen: seen.append(len(tiles)) or tiles, (32, 32), 0, batch_size
        )
        assert seen == shapes
        np.testing.assert_array_equal(result.probabilities, image[..., 0])


def test_tiled_equals_untiled_for_a_per_pixel_model():
    """A 1x1 convolution with a sigmoid sees one pixel at a time, so tiling must not change its output."""
    # Fixed weights: a small random kernel would leave every output within 1e-3 of 0.5, by chance.
    layer = keras.layers.Conv2D(
        1,
        1,
        activation="sigmoid",
        kernel_initializer=keras.initializers.Constant(4.0),
        bias_initializer=keras.initializers.Constant(-2.0),
    )
    small = keras.Sequential([keras.Input((32, 32, 1)), layer])
    large = keras.Sequential([keras.Input((96, 96, 1)), layer])
    image = np.random.default_rng(1).random((96, 96, 1)).astype(np.float32)
    untiled = predict_tiled(image, large.predict_on_batch, (96, 96), overlap=0)
    assert untiled.tiles == 1
    np.testing.assert_array_equal(untiled.probabilities, large.predict_on_batch(image[None])[0, ..., 0])
    tiled = predict_tiled(image, small.predict_on_batch, (32, 32), overlap=8, batch_size=8)
    assert tiled.tiles == 16
    np.testing.assert_allclose(tiled.probabilities, untiled.probabilities, atol=1e-6, rtol=0)
    assert not np.allclose(tiled.probabilities, 0.5, atol=1e-3)


def test_find_beads_counts_components_and_measures_them():
    probabilities = np.zeros((10, 12), np.float32)
    probabilities[1:3, 1:4] = 0.9  # 6 px
    probabilities[5:9, 6:8] = 0.6  # 8 px
    probabilities[5, 0] = 0.5  # not above 0.5
    beads = find_beads(probabilities)
    assert beads.count == 2 and beads.areas.tolist() == [6, 8]
    np.testing.assert_allclose(beads.centroids, [[1.5, 2.0], [6.5, 6.5]])
    assert beads.summary("a.png") == {
        "image": "a.png",
        "width": 12,
        "height": 10,
        "bead_count": 2,
        "foreground_fraction": round(14 / 120, 6),
        "mean_bead_area_px": 7.0,
        "median_bead_area_px": 7.0,
    }
    assert find_beads(probabilities, threshold=0.7).count == 1
    empty = find_beads(np.zeros((4, 4)))
    assert empty.count == 0 and empty.summary("e.png")["mean_bead_area_px"] == "" and empty.rows("e.png") == []


# --- `optimize predict` ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def predict_setup(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A tiny trained U-Net saved as `.keras` (a portable copy, as export-best writes), a data folder of its
    training size, and a folder of other sizes (larger, smaller, non-square, an RGB and a 16-bit image)."""
    folder = tmp_path_factory.mktemp("predict")
    data = write_microbeads(folder / "data", 4, size=SIZE, seed=5)
    images, masks = make_microbeads(16, SIZE, seed=6)
    keras.utils.set_random_seed(0)
    model = tiny_unet("resunet", "group")
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss=losses.get("dice"), metrics=losses.metrics())
    model.fit(images, masks, batch_size=8, epochs=3, verbose=0)
    model.save(folder / "trial.keras")
    write_portable_model(folder / "trial.keras", folder / "best_model.keras")

    other = folder / "other sizes"
    other.mkdir()
    big, _ = make_microbeads(1, 96, seed=7)
    grey8 = (big[0, ..., 0] * 255).round().astype(np.uint8)
    Image.fromarray(grey8[:80, :72]).save(other / "big.png")
    Image.fromarray(grey8[:20, :20]).save(other / "small.png")
    Image.fromarray(grey8[:32, :50]).save(other / "wide.png")
    Image.fromarray(np.stack([grey8[:40, :40]] * 3, axis=-1)).save(other / "colour.png")
    tifffile.imwrite(other / "deep.tif", (big[0, :48, :48, 0] * 65535).round().astype(np.uint16))
    return {"folder": folder, "data": data, "other": other, "model": model}


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as file:
        return list(csv.DictReader(file))


def check_outputs(out: Path, image_dir: Path) -> dict[str, dict[str, str]]:
    """The written files agree with each other and with the images; returns beads.csv rows by image."""
    summaries = {row["image"]: row for row in read_csv(out / "beads.csv")}
    per_bead = read_csv(out / "bead_areas.csv")
    assert sorted(summaries) == sorted(path.name for path in image_dir.iterdir())
    for name, row in summaries.items():
        stem = Path(name).stem
        height, width = read_image(image_dir / name).shape
        mask, labels = (np.asarray(Image.open(out / kind / f"{stem}.png")) for kind in ("masks", "labels"))
        assert mask.dtype == np.uint8 and set(np.unique(mask)) <= {0, 255} and mask.shape == (height, width)
        assert labels.dtype == np.uint16 and labels.shape == (height, width)
        assert np.array_equal(labels > 0, mask == 255)
        count = int(row["bead_count"])
        assert (int(row["width"]), int(row["height"])) == (width, height)
        assert sorted(np.unique(labels[labels > 0]).tolist()) == list(range(1, count + 1))
        assert float(row["foreground_fraction"]) == pytest.approx((mask == 255).mean(), abs=1e-6)
        areas = [int(bead["area_px"]) for bead in per_bead if bead["image"] == name]
        assert areas == np.bincount(labels.ravel())[1:].tolist()
        if count:
            assert float(row["mean_bead_area_px"]) == pytest.approx(np.mean(areas), abs=1e-3)
            assert float(row["median_bead_area_px"]) == pytest.approx(np.median(areas), abs=1e-3)
    return summaries


def test_predict_command_end_to_end_then_evaluate(predict_setup, tmp_path):
    """The console script on the training-size data folder: masks exactly as the model predicts them, files
    consistent, and `optimize evaluate` scores the label images against the true masks."""
    setup, out = predict_setup, tmp_path / "out"
    model_file = setup["folder"] / "best_model.keras"
    result = run_cli(
        "predict", "--model", str(model_file), "--images", str(setup["data"] / "images"), "--out", str(out)
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 5 and lines[0].startswith("[1/4] bead_") and "32x32 px, 1 tile(s)" in lines[0]
    assert lines[-1].startswith(f"wrote 4 masks to {out / 'masks'}/")
    assert "Traceback" not in result.stderr
    check_outputs(out, setup["data"] / "images")

    files = sorted((setup["data"] / "images").iterdir())
    x = np.stack([read_image(path) for path in files])[..., None]
    expected = setup["model"].predict(x, verbose=0)[..., 0] > 0.5
    for path, beads in zip(files, expected, strict=True):
        assert np.array_equal(np.asarray(Image.open(out / "masks" / f"{path.stem}.png")) == 255, beads)

    evaluated = run_cli("evaluate", "--pred", str(out / "labels"), "--data", str(setup["data"]))
    assert evaluated.returncode == 0, evaluated.stderr
    assert "overall" in evaluated.stdout


def test_predict_tiles_other_sizes(predict_setup, tmp_path, capsys):
    """Larger, smaller, non-square, colour and 16-bit images through the real U-Net; a low threshold so that
    there are beads to count."""
    setup, out = predict_setup, tmp_path / "out"
    model = setup["model"]
    big = read_image(setup["other"] / "big.png")[..., None]
    probabilities = predict_tiled(big, model.predict_on_batch, (SIZE, SIZE), overlap=8, batch_size=3).probabilities
    threshold = float(np.quantile(probabilities, 0.7))
    args = ["predict", "--model", str(setup["folder"] / "trial.keras"), "--images", str(setup["other"])]
    code = main([*args, "--out", str(out), "--threshold", f"{threshold:.6f}", "--batch-size", "3"])
    stdout = capsys.readouterr().out
    assert code == 0
    assert "big.png: 72x80 px, 9 tile(s)" in stdout  # starts 0, 24, 40 across and 0, 24, 48 down (overlap 8)
    assert "small.png: 20x20 px, 1 tile(s)" in stdout and "wide.png: 50x32 px, 2 tile(s)" in stdout
    summaries = check_outputs(out, setup["other"])
    assert int(summaries["big.png"]["bead_count"]) > 0
    np.testing.assert_array_equal(
        np.asarray(Image.open(out / "masks" / "big.png")) == 255, probabilities > float(f"{threshold:.6f}")
    )
    wider_overlap = main([*args, "--out", str(tmp_path / "wider overlap"), "--overlap", "16"])
    assert wider_overlap == 0 and "big.png: 72x80 px, 16 tile(s)" in capsys.readouterr().out


def one_line_error(args: list[str], capsys, code: int = 1) -> str:
    assert main(args) == code
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


def test_predict_errors(predict_setup, tmp_path, capsys):
    setup = predict_setup
    model_file, images = str(setup["folder"] / "best_model.keras"), str(setup["data"] / "images")
    out = str(tmp_path / "out")
    err = one_line_error(["predict", "--model", str(tmp_path / "nope.keras"), "--images", images, "--out", out], capsys)
    assert "nope.keras does not exist" in err
    not_a_model = tmp_path / "not_a_model.keras"
    not_a_model.write_text("not a model")
    err = one_line_error(["predict", "--model", str(not_a_model), "--images", images, "--out", out], capsys)
    assert "not_a_model.keras cannot be loaded as a Keras model: it is not a zip archive, as .keras files are" in err
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no images here")
    err = one_line_error(["predict", "--model", model_file, "--images", str(empty), "--out", out], capsys)
    assert f"{empty} has no image files" in err
    err = one_line_error(["predict", "--model", model_file, "--images", str(tmp_path / "gone"), "--out", out], capsys)
    assert "image folder" in err and "gone does not exist" in err
    one_file = sorted(Path(images).iterdir())[0]
    err = one_line_error(["predict", "--model", model_file, "--images", str(one_file), "--out", out], capsys)
    assert f"--images {one_file} is a file; expected the folder that holds it ({images})" in err

    colour_model = keras.Sequential([keras.Input((SIZE, SIZE, 3)), keras.layers.Conv2D(1, 1, activation="sigmoid")])
    colour_model.save(tmp_path / "colour.keras")
    err = one_line_error(
        ["predict", "--model", str(tmp_path / "colour.keras"), "--images", images, "--out", out], capsys
    )
    assert "colour.keras takes images of 3 channels" in err and "one grey channel" in err
    odd = tmp_path / "odd"
    odd.mkdir()
    tifffile.imwrite(odd / "five.tif", np.zeros((SIZE, SIZE, 5), np.uint8))
    err = one_line_error(["predict", "--model", model_file, "--images", str(odd), "--out", out], capsys)
    assert "five.tif has pixel array shape (32, 32, 5)" in err
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    picture = np.arange(SIZE * SIZE).reshape(SIZE, SIZE) % 200
    Image.fromarray(picture.astype(np.uint8)).save(mixed / "a.png")
    tifffile.imwrite(mixed / "b.tif", picture.astype(np.uint16))  # the same picture, read 256x darker
    err = one_line_error(["predict", "--model", model_file, "--images", str(mixed), "--out", out], capsys)
    assert f"{mixed} mixes 8-bit images (e.g. {mixed / 'a.png'}) with 16-bit images" in err

    err = one_line_error(
        ["predict", "--model", model_file, "--images", images, "--out", out, "--overlap", "32"], capsys, code=2
    )
    assert "--overlap 32 must be smaller than the model's input size 32x32 px (its shorter side, 32 px)" in err
    with contextlib.redirect_stderr(io.StringIO()) as usage, pytest.raises(SystemExit) as exit_info:
        main(["predict", "--model", model_file, "--images", images, "--out", out, "--threshold", "1.5"])
    assert exit_info.value.code == 2 and "expected a probability threshold in (0, 1), got '1.5'" in usage.getvalue()
    with contextlib.redirect_stderr(io.StringIO()) as usage, pytest.raises(SystemExit) as exit_info:
        main(["predict", "--model", model_file, "--images", images, "--out", out, "--batch-size", "1000000000"])
    assert exit_info.value.code == 2 and "expected an integer from 1 to 1024, got '1000000000'" in usage.getvalue()

    shrinking = keras.Sequential([keras.Input((SIZE, SIZE, 1)), keras.layers.Conv2D(1, 3, activation="sigmoid")])
    shrinking.save(tmp_path / "shrinking.keras")
    err = one_line_error(
        ["predict", "--model", str(tmp_path / "shrinking.keras"), "--images", images, "--out", out], capsys
    )
    assert "(None, 30, 30, 1)" in err and "one probability channel of the same height and width out" in err
    assert not Path(out).exists()


class FailingStream(io.StringIO):
    """Prediction's progress stream, failing at its second line: a run that stops after one image."""

    def write(self, text: str) -> int:
        if self.getvalue():
            raise OSError("disk full")
        return super().write(text)


def outputs(out: Path) -> dict[str, bytes]:
    return {str(path.relative_to(out)): path.read_bytes() for path in sorted(out.rglob("*")) if path.is_file()}


def test_predict_replaces_its_own_outputs_whole_and_never_a_data_sets_masks(predict_setup, tmp_path, capsys):
    """A data folder as --out is refused before anything runs (its masks would be replaced); a second run
    into one folder replaces the first's outputs whole (no mask of an image it did not segment stays); a
    run that fails part-way leaves the earlier outputs as they were, and nothing of its own."""
    model_file = str(predict_setup["folder"] / "best_model.keras")
    data = tmp_path / "data"
    shutil.copytree(predict_setup["data"], data)
    before = outputs(data)
    err = one_line_error(
        ["predict", "--model", model_file, "--images", str(data / "images"), "--out", str(data)], capsys
    )
    assert f"{data / 'masks'} holds 4 files that optimize predict did not write" in err and "--out" in err
    assert outputs(data) == before

    out, one_image = tmp_path / "out", tmp_path / "one image"
    one_image.mkdir()
    shutil.copyfile(sorted((data / "images").iterdir())[0], one_image / "other.png")
    assert main(["predict", "--model", model_file, "--images", str(data / "images"), "--out", str(out)]) == 0
    assert len(list((out / "masks").iterdir())) == 4
    assert main(["predict", "--model", model_file, "--images", str(one_image), "--out", str(out)]) == 0
    capsys.readouterr()
    second = outputs(out)
    assert sorted(second) == ["bead_areas.csv", "beads.csv", "labels/other.png", "masks/other.png"]

    with pytest.raises(OSError, match="disk full"):
        predict_folder(model_file, sorted((data / "images").iterdir()), out, stream=FailingStream())
    assert outputs(out) == second
    assert sorted(path.name for path in out.iterdir()) == ["bead_areas.csv", "beads.csv", "labels", "masks"]


@pytest.mark.parametrize("bad", ["text renamed", "truncated"])
def test_predict_refuses_an_unreadable_image_before_writing_anything(predict_setup, tmp_path, capsys, bad):
    """A good image, a bad one, a good one: one line naming the bad file, and no output folder at all (no
    masks or labels of the good image before it, no CSVs)."""
    images, out = tmp_path / "images", tmp_path / "out"
    images.mkdir()
    good = sorted((predict_setup["data"] / "images").iterdir())[0].read_bytes()
    for name in ("a_good.png", "c_good.png"):
        (images / name).write_bytes(good)
    broken = images / "b_bad.png"
    if bad == "text renamed":
        broken.write_text("these are notes, not an image\n")
    else:
        broken.write_bytes(good[: len(good) // 2])
    model_file = str(predict_setup["folder"] / "best_model.keras")
    err = one_line_error(["predict", "--model", model_file, "--images", str(images), "--out", str(out)], capsys)
    assert f"{broken} cannot be read as an image" in err
    assert "a_good" not in err and "c_good" not in err
    assert not out.exists()


def test_a_killed_runs_staging_folder_is_removed_by_the_next_run_on_its_host(predict_setup, tmp_path, capsys):
    """A predict killed outright left its hidden staging folder in --out for good; the next run removes the
    one whose process is gone, and keeps a running process's and another host's."""
    model_file = str(predict_setup["folder"] / "best_model.keras")
    out, host = tmp_path / "out", socket.gethostname()
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    abandoned = out / f".predict-{host}-{finished.stdout.strip()}-k1ll3d"
    running = out / f".predict-{host}-{os.getpid()}-runn1n"
    elsewhere = out / f".predict-another-node-{finished.stdout.strip()}-0th3r"
    for folder in (abandoned, running, elsewhere):
        (folder / "masks").mkdir(parents=True)
        (folder / "masks" / "half.png").write_bytes(b"half written")
    images = str(predict_setup["data"] / "images")
    assert main(["predict", "--model", model_file, "--images", images, "--out", str(out)]) == 0
    said = capsys.readouterr().out
    assert f"removed {abandoned}: the unfinished outputs of a predict run (process " in said
    assert not abandoned.exists() and running.is_dir() and elsewhere.is_dir()
    assert sorted(path.name for path in out.iterdir() if not path.name.startswith(".")) == [
        "bead_areas.csv",
        "beads.csv",
        "labels",
        "masks",
    ]

"""`optimize predict`: segment a folder of images with a saved model and count and measure their beads.

Each image is read exactly as training reads it (`data._loader.read_image`: grey, [0, 1] by its bit
depth), its probability map is predicted in tiles of the model's input size (see `tiling`), and the map
is thresholded and labelled (see `beads`). Written to the output folder:

- ``masks/<stem>.png``: the binary mask, 0 and 255 (uint8);
- ``labels/<stem>.png``: the beads as labels 1..n (uint16; a 32-bit ``.tif`` above 65535 beads), which
  `optimize evaluate --pred OUT/labels` scores against true masks;
- ``beads.csv``: per image its size, bead count, foreground fraction and mean and median bead area;
- ``bead_areas.csv``: per bead its area and centre (row ``centroid_y``, column ``centroid_x``).

Keras is imported only by the functions that load or run a model, so the checks of the inputs come first
and cost no Keras start-up: `image_inputs` reads every image once (`check_images`), so that an unreadable
image stops the command before anything is written, never with the output folder half-written.

The outputs are written into a hidden folder inside the output folder and moved into place only when every
image is done: a failure or an interrupt leaves an earlier run's outputs as they were, and a new run
replaces them whole (no mask of an image that is no longer in the folder stays behind). The hidden folder's
name holds the host and process id, so that the next run on that host removes the one a killed run left
(`remove_abandoned_staging`). `check_out`
refuses an output folder whose `masks/` or `labels/` hold files another program wrote (a data set's
masks), which that replacement would delete.
"""

from __future__ import annotations

import csv
import os
import shutil
import socket
import sys
import tempfile
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

import numpy as np
import tifffile
from PIL import Image

from data._errors import DataError
from data._loader import check_images as check_data_images
from data._loader import image_files, read_image
from optimize.errors import UsageError, UserError
from optimize.inference.beads import Beads, find_beads
from optimize.inference.tiling import PredictBatch, predict_tiled

if TYPE_CHECKING:
    import keras

DEFAULT_THRESHOLD = 0.5
STAGING_PREFIX = ".predict-"
DEFAULT_BATCH_SIZE = 8
MAX_UINT16_LABEL = 65535
SUMMARY_COLUMNS = (
    "image",
    "width",
    "height",
    "bead_count",
    "foreground_fraction",
    "mean_bead_area_px",
    "median_bead_area_px",
)
BEAD_COLUMNS = ("image", "bead", "area_px", "centroid_y", "centroid_x")
OUTPUT_FOLDERS = ("masks", "labels")
OUTPUT_FILES = ("beads.csv", "bead_areas.csv")


def load_model(path: str | Path, compile: bool = True) -> keras.Model:
    """Load a `.keras` model saved by this project, with its loss and metrics when `compile` is true.

    Plain ``keras.models.load_model`` loads the architecture and weights of our models by itself (they use
    only Keras' own layers); the loss and metrics of a compiled model are ours, and Keras finds them only
    once they are registered, which asking for ``losses.CUSTOM_OBJECTS`` does.
    """
    import keras

    import losses

    return keras.models.load_model(path, custom_objects=losses.CUSTOM_OBJECTS, compile=compile)


def image_inputs(model_path: str | Path, images_dir: str | Path) -> list[Path]:
    """The image files to segment, after checking that the model file and the image folder exist and that
    every image can be used (`check_images`).

    Keras-free, so that a wrong path or a bad image ends the command before Keras loads, and before
    `predict_folder` writes anything. Raises UserError.
    """
    model_path, images_dir = Path(model_path), Path(images_dir)
    if not model_path.exists():
        raise UserError(f"model file {model_path} does not exist; expected a .keras file (e.g. best_model.keras)")
    if model_path.is_dir():
        raise UserError(f"model {model_path} is a folder; expected a .keras file (e.g. best_model.keras)")
    if images_dir.is_file():
        raise UserError(f"--images {images_dir} is a file; expected the folder that holds it ({images_dir.parent})")
    if not images_dir.is_dir():
        raise UserError(f"image folder {images_dir} does not exist; expected a folder of images")
    try:
        files = image_files(images_dir)
    except DataError as error:
        raise UserError(str(error)) from None
    check_images(files)
    return files


def check_out(out: str | Path) -> None:
    """UserError when `out` cannot take the outputs: a file where a folder goes or the reverse, or `masks/` or
    `labels/` holding files without the `beads.csv` that marks an earlier run's outputs (a data set's own
    masks, which a run would replace). Keras-free: called before anything is computed."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"output folder {out} is a file; expected a folder (new or from an earlier predict)")
    for name in OUTPUT_FOLDERS:
        if (out / name).exists() and not (out / name).is_dir():
            raise UserError(f"{out / name} is a file; expected the folder predict writes its {name} into")
    for name in OUTPUT_FILES:
        if (out / name).is_dir():
            raise UserError(f"{out / name} is a folder; expected the CSV file predict writes there")
    if (out / OUTPUT_FILES[0]).is_file():
        return
    for name in OUTPUT_FOLDERS:
        held = sorted((out / name).iterdir()) if (out / name).is_dir() else []
        if held:
            raise UserError(
                f"{out / name} holds {len(held)} files that optimize predict did not write (no {OUTPUT_FILES[0]} "
                f"beside it; a data set's {name}?), which a run would replace; choose a new or empty --out"
            )


def check_images(files: Sequence[Path]) -> None:
    """UserError naming the first of `files` that cannot be segmented: one that cannot be read (not an image,
    a truncated file) or is not one grey or RGB(A) image; or files mixing 8-bit images with 16-bit ones
    holding 8-bit values, which training refuses too (`data._loader.check_images`).

    Each image is read in full, exactly as `predict_folder` reads it, and dropped before the next is read:
    headers alone do not do, since a truncated PNG or TIFF has an intact header and fails only when its
    pixels are decoded, and holding every image until prediction would take a large folder's size in
    memory. The cost is one more decode per image, small beside predicting its tiles.
    """
    try:
        check_data_images(files)
    except DataError as error:
        raise UserError(str(error)) from None


def open_model(path: str | Path) -> keras.Model:
    """The model in `path`, loaded for prediction only (without its loss and metrics); UserError if it is not
    a Keras model taking one image of a fixed size and giving one probability channel."""
    if Path(path).suffix == ".keras" and not zipfile.is_zipfile(path):
        raise UserError(f"{path} cannot be loaded as a Keras model: it is not a zip archive, as .keras files are")
    try:
        model = load_model(path, compile=False)
    except Exception as error:  # Keras raises many kinds for a file that is not a model
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
        raise UserError(f"{path} cannot be loaded as a Keras model: {reason}") from None
    inputs, outputs = model.inputs, model.outputs
    if (
        len(inputs) != 1
        or len(outputs) != 1
        or len(inputs[0].shape) != 4
        or tuple(outputs[0].shape[3:]) != (1,)
        or tuple(outputs[0].shape[1:3]) != tuple(inputs[0].shape[1:3])
    ):
        shapes = [tuple(tensor.shape) for tensor in inputs], [tuple(tensor.shape) for tensor in outputs]
        raise UserError(
            f"{path} maps {shapes[0]} to {shapes[1]}; expected one (batch, height, width, channels) image in "
            "and one probability channel of the same height and width out, as `optimize run` builds models"
        )
    height, width, _ = inputs[0].shape[1:]
    if height is None or width is None:
        raise UserError(
            f"{path} takes images of any size ({inputs[0].shape}); `optimize predict` tiles images at the "
            "model's fixed input size, as `optimize run` builds models"
        )
    return model


@dataclass(frozen=True)
class PredictionSummary:
    """What `predict_folder` wrote."""

    images: int
    beads: int
    out: Path


def predict_folder(
    model_path: str | Path,
    files: Sequence[Path],
    out: str | Path,
    *,
    threshold: float = DEFAULT_THRESHOLD,
    overlap: int | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    stream: TextIO | None = None,
) -> PredictionSummary:
    """Segment `files` with the model in `model_path` and write masks, labels and CSVs under `out`.

    `files` as `image_inputs` returns them: each already read once, so that a bad image stops the command
    before anything is written here; a caller with a list of its own calls `check_images` first.

    `overlap` is the overlap of neighbouring tiles in pixels (default: a quarter of the model's input
    size). Prints one line per image to `stream` (default: standard output). Raises UserError for a model
    or an image that cannot be used, UsageError for an overlap the tile size does not allow.
    """
    stream = stream or sys.stdout
    model = open_model(model_path)
    tile_h, tile_w, channels = model.inputs[0].shape[1:]
    if overlap is None:
        overlap = min(tile_h, tile_w) // 4
    if overlap >= min(tile_h, tile_w):
        raise UsageError(
            f"--overlap {overlap} must be smaller than the model's input size {tile_w}x{tile_h} px "
            f"(its shorter side, {min(tile_h, tile_w)} px)"
        )
    if channels != 1:
        raise UserError(
            f"{model_path} takes images of {channels} channels, but {files[0]} and every image are read as one "
            "grey channel, as training reads them; expected a model trained by `optimize run`"
        )
    out = Path(out)
    check_out(out)
    out.mkdir(parents=True, exist_ok=True)
    remove_abandoned_staging(out, stream)
    staging = Path(tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{socket.gethostname()}-{os.getpid()}-", dir=out))
    try:
        masks_dir, labels_dir = staging / "masks", staging / "labels"
        masks_dir.mkdir()
        labels_dir.mkdir()
        summaries: list[dict[str, object]] = []
        bead_rows: list[dict[str, object]] = []
        predict_batch = _batch_predictor(model)
        for number, path in enumerate(files, start=1):
            image = _model_input(path)
            prediction = predict_tiled(image, predict_batch, (tile_h, tile_w), overlap, batch_size)
            beads = find_beads(prediction.probabilities, threshold)
            _write_images(beads, path.stem, masks_dir, labels_dir)
            summaries.append(beads.summary(path.name))
            bead_rows.extend(beads.rows(path.name))
            stream.write(
                f"[{number}/{len(files)}] {path.name}: {image.shape[1]}x{image.shape[0]} px, {prediction.tiles} "
                f"tile(s), {beads.count} beads, {beads.mask.mean():.1%} bead pixels\n"
            )
            stream.flush()
        _write_csv(staging / "beads.csv", SUMMARY_COLUMNS, summaries)
        _write_csv(staging / "bead_areas.csv", BEAD_COLUMNS, bead_rows)
        _replace_outputs(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return PredictionSummary(images=len(files), beads=len(bead_rows), out=out)


def remove_abandoned_staging(out: Path, stream: TextIO) -> None:
    """Remove the hidden staging folders in `out` of predict runs on this host whose process is gone (killed
    outright, so their own cleanup never ran), saying so on `stream`; another host's, or a running one's, stay."""
    host = socket.gethostname()
    for folder in sorted(out.glob(f"{STAGING_PREFIX}{host}-*-*")):
        pid = folder.name.removeprefix(f"{STAGING_PREFIX}{host}-").split("-", 1)[0]
        if folder.is_dir() and pid.isdigit() and not _process_alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)
            stream.write(f"removed {folder}: the unfinished outputs of a predict run (process {pid}) that was killed\n")


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _replace_outputs(staging: Path, out: Path) -> None:
    """Move the finished outputs from `staging` into `out`, in place of an earlier run's (`beads.csv` last,
    as it marks the folder as predict's)."""
    for name in (*OUTPUT_FOLDERS, *reversed(OUTPUT_FILES)):
        old = out / name
        if old.is_dir():
            shutil.rmtree(old)
        elif old.exists():
            old.unlink()
        (staging / name).replace(old)


def _model_input(path: Path) -> np.ndarray:
    """One image as (H, W, 1) float32; UserError naming it if it cannot be read."""
    try:
        return read_image(path)[..., None]
    except DataError as error:
        raise UserError(str(error)) from None


def _batch_predictor(model: keras.Model) -> PredictBatch:
    """Tiles -> probabilities as NumPy, through the model's compiled inference step."""

    def predict_batch(tiles: np.ndarray) -> np.ndarray:
        return np.asarray(model.predict_on_batch(tiles))

    return predict_batch


def _write_images(beads: Beads, stem: str, masks_dir: Path, labels_dir: Path) -> None:
    Image.fromarray(np.where(beads.mask, 255, 0).astype(np.uint8)).save(masks_dir / f"{stem}.png")
    if beads.count <= MAX_UINT16_LABEL:
        Image.fromarray(beads.labels.astype(np.uint16)).save(labels_dir / f"{stem}.png")
    else:
        tifffile.imwrite(labels_dir / f"{stem}.tif", beads.labels.astype(np.uint32))


def _write_csv(path: Path, columns: Sequence[str], rows: list[dict[str, object]]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as file:
        writer = csv.DictWriter(file, fieldnames=list(columns))
        writer.writeheader()
        writer.writerows(rows)

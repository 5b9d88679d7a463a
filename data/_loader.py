"""Reading a user's `images/` and `masks/` folders into arrays, checking everything before training starts.

Images become float32 in [0, 1] by their dtype's range (8-bit / 255, 16-bit / 65535, so the
relative brightness of images is kept); float images outside [0, 1] are min-max scaled.
Masks become float32 {0, 1}: any non-zero pixel is a bead, except in lossy JPEG masks, which
are thresholded at half their range; or, asked for, int32 label images that keep the user's beads.
Both are shaped (N, H, W, 1) and sorted by file stem.
`load_mask_pairs` reads masks with predicted masks for object metrics, keeping label images' labels.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image

from data._errors import DataError

IMAGE_EXTENSIONS = (".png", ".tif", ".tiff", ".jpg", ".jpeg")
_LOSSY_EXTENSIONS = (".jpg", ".jpeg")
_LUMINANCE = np.array([0.299, 0.587, 0.114])
_MAX_LISTED = 10


def load_dataset(
    root: str | Path, image_size: int | tuple[int, int] | None = None, *, labels: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Images and masks of `root/images/*` and `root/masks/*`, paired by file stem.

    `image_size` (an int or (height, width)) resizes images bilinearly and masks by nearest
    neighbour; without it every image must have the same size. With `labels`, masks come as int32
    label images: an integer label image keeps its beads apart (for bead-level metrics), any other
    mask is {0, 1}. Raises DataError for anything that cannot be used; warns once per load about RGB
    images and label-image masks.
    """
    root = Path(root)
    image_files, mask_files = _paired_files(root)
    target = (image_size, image_size) if isinstance(image_size, int) else image_size
    rgb_files: list[Path] = []
    label_files: list[Path] = []
    images, masks = [], []
    for image_file, mask_file in zip(image_files, mask_files, strict=True):
        image, is_rgb = _as_grey(_read(image_file), image_file)
        mask = _as_labels(_read(mask_file), mask_file)
        if mask.min() < 0 or mask.max() > 1:
            label_files.append(mask_file)
        if not labels:
            mask = (mask != 0).astype(np.float32)
        if image.shape != mask.shape:
            raise DataError(
                f"{image_file} is {_size(image)} px but its mask {mask_file} is {_size(mask)} px; "
                "an image and its mask must have the same size"
            )
        if is_rgb:
            rgb_files.append(image_file)
        images.append(_resize(_to_unit_range(image), target, Image.Resampling.BILINEAR))
        masks.append(_resize(mask.astype(np.float32), target, Image.Resampling.NEAREST))
    _check_same_size(images, image_files)
    _warn_once(rgb_files, "RGB image(s) converted to grey by luminance")
    if not labels:
        _warn_once(label_files, "mask(s) have more than 2 values (label images?); every non-zero pixel is a bead")
    stacked = np.stack(masks)[..., None]
    return np.stack(images)[..., None], stacked.astype(np.int32) if labels else stacked


def load_mask_pairs(data_dir: str | Path, pred_dir: str | Path) -> tuple[list[str], list[np.ndarray], list[np.ndarray]]:
    """The masks of `data_dir/masks` and the predicted masks in `pred_dir`, paired by file stem as
    `load_dataset` pairs images and masks: their stems, true masks and predicted masks, sorted by stem.

    Each mask keeps its values when it is an integer label image (so touching beads stay apart) and
    becomes {0, 1} otherwise (see `_as_labels`); sizes are kept. Raises DataError naming the files for
    an unpaired file or a pair of different sizes.
    """
    data_dir, pred_dir = Path(data_dir), Path(pred_dir)
    _check_dataset_folder(data_dir)
    if not pred_dir.is_dir():
        raise DataError(f"prediction folder {pred_dir} does not exist; expected a folder of predicted masks")
    mask_files, pred_files = _pair_by_stem(("mask", data_dir / "masks"), ("prediction", pred_dir))
    true_masks, pred_masks = [], []
    for mask_file, pred_file in zip(mask_files, pred_files, strict=True):
        true_mask, pred_mask = _as_labels(_read(mask_file), mask_file), _as_labels(_read(pred_file), pred_file)
        if true_mask.shape != pred_mask.shape:
            raise DataError(
                f"{pred_file} is {_size(pred_mask)} px but its mask {mask_file} is {_size(true_mask)} px; "
                "a prediction and its mask must have the same size"
            )
        true_masks.append(true_mask)
        pred_masks.append(pred_mask)
    return [path.stem for path in mask_files], true_masks, pred_masks


def image_files(folder: str | Path) -> list[Path]:
    """The image files of one folder sorted by stem, as `load_dataset` lists `images/`; DataError if none."""
    return [path for _, path in sorted(_image_files(Path(folder)).items())]


def read_image(path: str | Path) -> np.ndarray:
    """One image as `load_dataset` reads it, at its own size: (H, W) float32 in [0, 1], colour made grey.

    Raises DataError for a file that cannot be read or is not one grey or RGB(A) image.
    """
    path = Path(path)
    return _to_unit_range(_as_grey(_read(path), path)[0])


def _paired_files(root: Path) -> tuple[list[Path], list[Path]]:
    """Image and mask files with the same stems, sorted by stem; DataError for anything unpaired."""
    _check_dataset_folder(root)
    return _pair_by_stem(("image", root / "images"), ("mask", root / "masks"))


def _check_dataset_folder(root: Path) -> None:
    if not root.is_dir():
        raise DataError(f"dataset folder {root} does not exist; expected a folder with images/ and masks/")


def _pair_by_stem(first: tuple[str, Path], second: tuple[str, Path]) -> tuple[list[Path], list[Path]]:
    """Files of two folders, each given with what its files are, paired by stem and sorted by stem;
    DataError naming the files of either folder that have no partner."""
    (first_kind, first_folder), (second_kind, second_folder) = first, second
    first_files, second_files = _image_files(first_folder), _image_files(second_folder)
    for files, others, kind, other_kind, other_folder in (
        (first_files, second_files, first_kind, second_kind, second_folder),
        (second_files, first_files, second_kind, first_kind, first_folder),
    ):
        unpaired = sorted(set(files) - set(others))
        if unpaired:
            raise DataError(
                f"{other_folder} has no {other_kind} for {len(unpaired)} {kind}(s): "
                f"{_listing(unpaired)}; pair them by file name (the extension may differ)"
            )
    stems = sorted(first_files)
    return [first_files[stem] for stem in stems], [second_files[stem] for stem in stems]


def _image_files(folder: Path) -> dict[str, Path]:
    """Image files of `folder` by stem, skipping hidden files and files with other extensions."""
    if not folder.is_dir():
        raise DataError(f"{folder} does not exist; expected {folder.parent} to hold images/ and masks/ folders")
    files: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or path.suffix.lower() not in IMAGE_EXTENSIONS or not path.is_file():
            continue
        if path.stem in files:
            raise DataError(f"{files[path.stem]} and {path} have the same stem; keep one file per stem")
        files[path.stem] = path
    if not files:
        raise DataError(f"{folder} has no image files; expected {', '.join(IMAGE_EXTENSIONS)} files")
    return files


def _read(path: Path) -> np.ndarray:
    """Pixel array of one file as stored (TIFF through tifffile, other formats through Pillow)."""
    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            return tifffile.imread(path)
        with Image.open(path) as image:
            if image.mode == "P":
                image = image.convert("RGBA" if "transparency" in image.info else "RGB")
            return np.asarray(image)
    except Exception as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise DataError(f"{path} cannot be read as an image: {reason}") from error


def _as_grey(pixels: np.ndarray, path: Path) -> tuple[np.ndarray, bool]:
    """2-D image in its own dtype, and whether it was converted from colour."""
    pixels = _without_alpha(pixels, path)
    if pixels.ndim == 2:
        return pixels, False
    grey = pixels @ _LUMINANCE
    return (np.round(grey).astype(pixels.dtype) if pixels.dtype.kind in "ui" else grey), True


def _as_labels(pixels: np.ndarray, path: Path) -> np.ndarray:
    """2-D mask: an integer label image (more than 2 values) as stored, any other mask as uint8 {0, 1}.

    Any non-zero pixel is a bead, except in lossy JPEG masks, which are thresholded at half their range.
    """
    pixels = _without_alpha(pixels, path)
    if pixels.ndim == 3:
        pixels = pixels.max(axis=-1)
    if path.suffix.lower() in _LOSSY_EXTENSIONS:
        return (pixels > np.iinfo(pixels.dtype).max / 2).astype(np.uint8)
    values = np.unique(pixels)
    if values.size <= 2:
        return (pixels != 0).astype(np.uint8)
    if not np.array_equal(values, np.round(values)):
        raise DataError(
            f"{path} has {values.size} distinct non-integer values; expected a binary mask "
            "(0 = background, non-zero = bead) or an integer label image"
        )
    return pixels


def _without_alpha(pixels: np.ndarray, path: Path) -> np.ndarray:
    """(H, W) grey or (H, W, 3) colour pixels; alpha channels are dropped."""
    pixels = np.squeeze(pixels)
    if pixels.ndim == 3 and pixels.shape[-1] in (2, 4):
        pixels = pixels[..., :-1]
    if pixels.ndim == 3 and pixels.shape[-1] == 1:
        pixels = pixels[..., 0]
    if pixels.ndim == 2 or (pixels.ndim == 3 and pixels.shape[-1] == 3):
        return pixels
    raise DataError(f"{path} has pixel array shape {pixels.shape}; expected one grey or RGB(A) image")


def _to_unit_range(pixels: np.ndarray) -> np.ndarray:
    """Float32 in [0, 1]: unsigned integers by their bit depth (8 or 16), floats min-max scaled if outside."""
    if pixels.dtype.kind == "b":
        return pixels.astype(np.float32)
    low, high = pixels.min(), pixels.max()
    full_scale = 255 if pixels.dtype.itemsize == 1 else 65535
    if pixels.dtype.kind in "ui" and low >= 0 and high <= full_scale:
        return (pixels / full_scale).astype(np.float32)
    if pixels.dtype.kind == "f" and low >= 0 and high <= 1:
        return pixels.astype(np.float32)
    scaled = (pixels.astype(np.float64) - low) / (high - low) if high > low else np.zeros(pixels.shape)
    return scaled.astype(np.float32)


def _resize(pixels: np.ndarray, target: tuple[int, int] | None, resample: Image.Resampling) -> np.ndarray:
    """Float32 array resized to `target` (height, width); unchanged when already that size or no target."""
    if target is None or pixels.shape == tuple(target):
        return pixels
    resized = Image.fromarray(pixels.astype(np.float32)).resize(target[::-1], resample)
    return np.asarray(resized, np.float32)


def _check_same_size(images: list[np.ndarray], files: list[Path]) -> None:
    """DataError naming two images of different sizes."""
    for image, path in zip(images, files, strict=True):
        if image.shape != images[0].shape:
            raise DataError(
                f"images have different sizes: {files[0]} is {_size(images[0])} px, {path} is "
                f"{_size(image)} px; pass image_size to resize them all to one size"
            )


def _size(pixels: np.ndarray) -> str:
    """Width x height, as image viewers write it."""
    return f"{pixels.shape[1]}x{pixels.shape[0]}"


def _listing(names: list[str]) -> str:
    """Up to `_MAX_LISTED` names, then how many more."""
    shown = ", ".join(names[:_MAX_LISTED])
    return shown if len(names) <= _MAX_LISTED else f"{shown} and {len(names) - _MAX_LISTED} more"


def _warn_once(files: list[Path], problem: str) -> None:
    """One warning for all `files` that share `problem`, naming the first."""
    if files:
        warnings.warn(f"{len(files)} {problem} (first: {files[0]})", UserWarning, stacklevel=3)

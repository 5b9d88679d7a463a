"""Reading a user's `images/` and `masks/` folders into arrays, checking everything before training starts.

Images become float32 in [0, 1] by their dtype's range (8-bit / 255; 16-bit, and 32-bit integers whose
values fit in 0..65535, / 65535), so the relative brightness of images is kept; a folder that mixes 8-bit
images with wider ones holding only 8-bit values is refused, as those would read 256x darker. Other
integer images and float images outside [0, 1] are min-max scaled; NaN or inf pixels are refused.
Masks become float32 {0, 1}: any non-zero pixel is a bead, except in lossy JPEG masks, which
are thresholded at half their range; or, asked for, int32 label images that keep the user's beads.
Only a channel a file declares as alpha is dropped; a picture drawn only in its alpha channel (constant
colour) is read from the alpha. Both are shaped (N, H, W, 1) and sorted by file stem.
`load_mask_pairs` reads masks with predicted masks for object metrics, keeping label images' labels.
"""

from __future__ import annotations

import unicodedata
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image

from data._errors import DataError

IMAGE_EXTENSIONS = (".png", ".tif", ".tiff", ".jpg", ".jpeg")
_LOSSY_EXTENSIONS = (".jpg", ".jpeg")
_LUMINANCE = np.array([0.299, 0.587, 0.114])
_MAX_LISTED = 10
_PILLOW_MODES_AS_STORED = ("1", "L", "LA", "I", "F", "RGB", "RGBA")
"""Pillow modes read as they are (and "I;16*"); "P" and "PA" become RGB(A), any other mode RGB."""
_PILLOW_ALPHA_MODES = ("LA", "RGBA")
_TIFF_ALPHA = (tifffile.EXTRASAMPLE.ASSOCALPHA, tifffile.EXTRASAMPLE.UNASSALPHA)
_TIFF_INKSET_CMYK = 1
_COLOUR_MASKS = (
    "colour mask(s) with more than 2 colours read as binary: every non-black pixel is a bead, so touching "
    "beads merge; save label images as one grey integer channel"
)

GREY_LABEL_SHARE = 0.5
"""Above this share of touching bead pixels with different labels, a 'label image' is a grey picture."""
_GREY_LABELS = (
    "label image(s) look like grey pictures, not beads: neighbouring pixels mostly carry different labels; "
    "give predicted masks or label images (optimize predict writes them to OUT/labels)"
)

Skipped = list[tuple[Path, list[Path]]]
"""Folders with the regular files they hold that are not read for their extension."""


def load_dataset(
    root: str | Path, image_size: int | tuple[int, int] | None = None, *, labels: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Images and masks of `root/images/*` and `root/masks/*`, paired by file stem.

    `image_size` (an int or (height, width)) resizes images bilinearly and masks by nearest
    neighbour; without it every image must have the same size. With `labels`, masks come as int32
    label images: an integer label image keeps its beads apart (for bead-level metrics), any other
    mask is {0, 1}. Raises DataError for anything that cannot be used; warns once per load about RGB
    images, label-image masks, colour masks, pictures drawn in their alpha channel and skipped files.
    """
    root = Path(root)
    image_files, mask_files, skipped = _paired_files(root)
    target = (image_size, image_size) if isinstance(image_size, int) else image_size
    rgb_files: list[Path] = []
    label_files: list[Path] = []
    colour_files: list[Path] = []
    alpha_files: list[Path] = []
    depths = _BitDepths(root / "images")
    images, masks = [], []
    for image_file, mask_file in zip(image_files, mask_files, strict=True):
        image_pixels, image_from_alpha = _picture(image_file)
        image, is_rgb = _as_grey(image_pixels)
        mask_pixels, mask_from_alpha = _picture(mask_file)
        mask, is_colour = _as_labels(mask_pixels, mask_file)
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
        if is_colour:
            colour_files.append(mask_file)
        alpha_files += [path for path, used in ((image_file, image_from_alpha), (mask_file, mask_from_alpha)) if used]
        depths.add(image, image_file)
        images.append(_resize(_to_unit_range(image), target, Image.Resampling.BILINEAR))
        masks.append(_resize(mask.astype(np.float32), target, Image.Resampling.NEAREST))
    _check_same_size(images, image_files)
    depths.check()
    _warn_skipped(skipped)
    _warn_once(rgb_files, "RGB image(s) converted to grey by luminance")
    _warn_once(alpha_files, "file(s) drawn only in their alpha channel (one colour); the alpha is read as the picture")
    _warn_once(colour_files, _COLOUR_MASKS)
    if not labels:
        _warn_once(label_files, "mask(s) have more than 2 values (label images?); every non-zero pixel is a bead")
    stacked = np.stack(masks)[..., None]
    return np.stack(images)[..., None], stacked.astype(np.int32) if labels else stacked


def load_mask_pairs(data_dir: str | Path, pred_dir: str | Path) -> tuple[list[str], list[np.ndarray], list[np.ndarray]]:
    """The masks of `data_dir/masks` and the predicted masks in `pred_dir`, paired by file stem as
    `load_dataset` pairs images and masks: their stems, true masks and predicted masks, sorted by stem.

    Each mask keeps its values when it is an integer label image (so touching beads stay apart) and
    becomes {0, 1} otherwise (see `_as_labels`); sizes are kept. Raises DataError naming the files for
    an unpaired file or a pair of different sizes; warns once about colour masks, which are read as binary.
    """
    data_dir, pred_dir = Path(data_dir), Path(pred_dir)
    _check_masks_folder(data_dir)
    if pred_dir.is_file():
        raise DataError(f"prediction folder {pred_dir} is a file; expected a folder of predicted masks")
    if not pred_dir.is_dir():
        raise DataError(f"prediction folder {pred_dir} does not exist; expected a folder of predicted masks")
    mask_files, pred_files, skipped = _pair_by_stem(("mask", data_dir / "masks"), ("prediction", pred_dir))
    true_masks, pred_masks = [], []
    colour_files: list[Path] = []
    alpha_files: list[Path] = []
    grey_files: list[Path] = []
    for mask_file, pred_file in zip(mask_files, pred_files, strict=True):
        pair = []
        for path in (mask_file, pred_file):
            pixels, from_alpha = _picture(path)
            labels, is_colour = _as_labels(pixels, path)
            pair.append(labels)
            if is_colour:
                colour_files.append(path)
            if from_alpha:
                alpha_files.append(path)
            if _looks_grey(labels):
                grey_files.append(path)
        true_mask, pred_mask = pair
        if true_mask.shape != pred_mask.shape:
            raise DataError(
                f"{pred_file} is {_size(pred_mask)} px but its mask {mask_file} is {_size(true_mask)} px; "
                "a prediction and its mask must have the same size"
            )
        true_masks.append(true_mask)
        pred_masks.append(pred_mask)
    _warn_skipped(skipped)
    _warn_once(alpha_files, "mask(s) drawn only in their alpha channel (one colour); the alpha is read as the mask")
    _warn_once(colour_files, _COLOUR_MASKS)
    _warn_once(grey_files, _GREY_LABELS)
    return [path.stem for path in mask_files], true_masks, pred_masks


def _looks_grey(labels: np.ndarray) -> bool:
    """Whether a label image is rather a grey picture (an image given as a mask): in labels, two touching
    bead pixels mostly carry the same label, different ones only where beads touch; in a grey picture
    they mostly differ."""
    if labels.max() <= 1:
        return False
    touching = different = 0
    for here, there in ((labels[1:, :], labels[:-1, :]), (labels[:, 1:], labels[:, :-1])):
        both = (here != 0) & (there != 0)
        touching += int(both.sum())
        different += int((both & (here != there)).sum())
    return touching > 0 and different > GREY_LABEL_SHARE * touching


def image_files(folder: str | Path) -> list[Path]:
    """The image files of one folder sorted by stem, as `load_dataset` lists `images/`; DataError if none.

    Warns once about the files it skips for their extension."""
    files, skipped = _image_files(Path(folder))
    _warn_skipped([(Path(folder), skipped)])
    return [path for _, path in sorted(files.items())]


def read_image(path: str | Path) -> np.ndarray:
    """One image as `load_dataset` reads it, at its own size: (H, W) float32 in [0, 1], colour made grey.

    Raises DataError for a file that cannot be read, is not one grey or RGB(A) image, or has NaN or
    inf pixels.
    """
    path = Path(path)
    return _to_unit_range(_as_grey(_picture(path)[0])[0])


def check_images(files: Sequence[Path]) -> None:
    """DataError naming the first of `files` that `read_image` refuses, or when they mix 8-bit images with
    wider ones holding only 8-bit values, which `read_image` would read 256x darker than them (the mix
    `load_dataset` refuses in a training folder). Each file is read once and dropped before the next."""
    if not files:
        return
    depths = _BitDepths(Path(files[0]).parent)
    for path in files:
        grey = _as_grey(_picture(Path(path))[0])[0]
        _to_unit_range(grey)
        depths.add(grey, Path(path))
    depths.check()


def _paired_files(root: Path) -> tuple[list[Path], list[Path], Skipped]:
    """Image and mask files with the same stems, sorted by stem, and the files skipped for their
    extension; DataError for anything unpaired."""
    _check_dataset_folder(root)
    return _pair_by_stem(("image", root / "images"), ("mask", root / "masks"))


def _check_dataset_folder(root: Path) -> None:
    if root.is_file():
        raise DataError(f"{root} is a file; expected a folder with images/ and masks/")
    if not root.is_dir():
        raise DataError(f"dataset folder {root} does not exist; expected a folder with images/ and masks/")


def _check_masks_folder(root: Path) -> None:
    """DataError unless `root` is a folder holding masks/ (images/ is not needed to score predictions); a
    folder of masks given itself is told to give the folder above it."""
    if root.is_file():
        raise DataError(f"{root} is a file; expected a data folder holding masks/")
    if not root.is_dir():
        raise DataError(f"data folder {root} does not exist; expected a folder holding masks/")
    if (root / "masks").exists():
        return
    if any(path.suffix.lower() in IMAGE_EXTENSIONS for path in root.iterdir() if path.is_file()):
        raise DataError(
            f"{root} holds images but no masks/ folder; give the data folder that holds masks/ "
            f"({root.parent}?), not the masks folder itself"
        )
    raise DataError(f"{root} has no masks/ folder; expected a data folder whose masks/ hold the true beads")


def _pair_by_stem(first: tuple[str, Path], second: tuple[str, Path]) -> tuple[list[Path], list[Path], Skipped]:
    """Files of two folders, each given with what its files are, paired by stem and sorted by stem, and
    the files each folder skips for their extension; DataError naming the files of either folder that
    have no partner. Stems are compared in Unicode NFC form, so that a name typed on macOS (NFD) pairs."""
    (first_kind, first_folder), (second_kind, second_folder) = first, second
    (first_files, first_skipped), (second_files, second_skipped) = (
        _image_files(first_folder),
        _image_files(second_folder),
    )
    for files, others, kind, other_kind, other_folder in (
        (first_files, second_files, first_kind, second_kind, second_folder),
        (second_files, first_files, second_kind, first_kind, first_folder),
    ):
        unpaired = sorted(files[stem].stem for stem in set(files) - set(others))
        if unpaired:
            raise DataError(
                f"{other_folder} has no {other_kind} for {len(unpaired)} {kind}(s): "
                f"{_listing(unpaired)}; pair them by file name (the extension may differ)"
            )
    stems = sorted(first_files)
    skipped = [(first_folder, first_skipped), (second_folder, second_skipped)]
    return [first_files[stem] for stem in stems], [second_files[stem] for stem in stems], skipped


def _image_files(folder: Path) -> tuple[dict[str, Path], list[Path]]:
    """Image files of `folder` by stem (NFC), and the regular files skipped for their extension.

    Hidden files are left out without a word. An entry with an image extension that is a folder or a
    broken link is refused: the image it stands for would otherwise be reported missing."""
    if folder.is_file():
        raise DataError(f"{folder} is a file; expected {folder.parent} to hold images/ and masks/ folders")
    if not folder.is_dir():
        raise DataError(f"{folder} does not exist; expected {folder.parent} to hold images/ and masks/ folders")
    files: dict[str, Path] = {}
    skipped: list[Path] = []
    for path in sorted(folder.iterdir()):
        if path.name.startswith("."):
            continue
        if path.suffix.lower() not in IMAGE_EXTENSIONS:
            if path.is_file():
                skipped.append(path)
            continue
        if not path.is_file():
            raise DataError(f"{path} {_not_a_file(path)}; expected an image file")
        stem = unicodedata.normalize("NFC", path.stem)
        if stem in files:
            raise DataError(f"{files[stem]} and {path} have the same stem; keep one file per stem")
        files[stem] = path
    if not files:
        held = f" (it holds {_listing([path.name for path in skipped])})" if skipped else ""
        raise DataError(f"{folder} has no image files; expected {', '.join(IMAGE_EXTENSIONS)} files{held}")
    return files, skipped


def _not_a_file(path: Path) -> str:
    """What an entry that is not a regular file is, for an error message."""
    if path.is_dir():
        return "is a folder"
    if path.is_symlink() and not path.exists():
        return "is a broken link"
    return "is not a regular file"


def _picture(path: Path) -> tuple[np.ndarray, bool]:
    """(H, W) grey or (H, W, 3) colour pixels of one file in its own dtype, and whether they are its
    alpha channel; DataError for a file that cannot be read, has NaN or inf pixels or is not one picture."""
    pixels, has_alpha = _read(path)
    _check_finite(pixels, path)
    return _without_alpha(pixels, has_alpha, path)


def _read(path: Path) -> tuple[np.ndarray, bool]:
    """Pixel array of one file as stored, channels last (TIFF through tifffile, other formats through
    Pillow), and whether its last channel is declared alpha."""
    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            return _read_tiff(path)
        with Image.open(path) as image:
            if image.mode in ("P", "PA"):
                image = image.convert("RGBA" if image.mode == "PA" or "transparency" in image.info else "RGB")
            elif image.mode not in _PILLOW_MODES_AS_STORED and not image.mode.startswith("I;16"):
                image = image.convert("RGB")  # CMYK, YCbCr, LAB, ...: channels that are not grey, RGB or alpha
            return np.asarray(image), image.mode in _PILLOW_ALPHA_MODES
    except DataError:
        raise
    except Exception as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise DataError(f"{path} cannot be read as an image: {reason}") from error


def _read_tiff(path: Path) -> tuple[np.ndarray, bool]:
    """The first series of a TIFF (as `tifffile.imread` reads it), CMYK and palette made RGB, 0-is-white
    (MINISWHITE) made 0-is-black, and whether its last sample is alpha: tifffile gives extra samples, alpha
    or anything else, as more channels. Samples stored as separate planes (axes "SYX") are left where they
    are, so a stack of frames is not taken for colour."""
    with tifffile.TiffFile(path) as tiff:
        series = tiff.series[0]
        pixels, axes, page = series.asarray(), series.axes, series.keyframe
        colormap = page.colormap if page.photometric == tifffile.PHOTOMETRIC.PALETTE else None
    if page.photometric == tifffile.PHOTOMETRIC.MINISWHITE:  # 0 is white: read as grey with 0 black
        pixels = ~pixels if pixels.dtype == bool else _inverted(pixels, path)
    if colormap is not None:
        return np.moveaxis(colormap, 0, -1)[pixels], False  # indices to the colours they stand for
    if not axes.endswith("S"):
        return pixels, False
    extras = tuple(page.extrasamples)
    if page.photometric == tifffile.PHOTOMETRIC.SEPARATED:
        pixels = _cmyk_to_rgb(pixels, page.samplesperpixel - len(extras), page.tags.valueof(332, 1), path)
    return pixels, bool(extras) and extras[-1] in _TIFF_ALPHA


def _inverted(pixels: np.ndarray, path: Path) -> np.ndarray:
    """Unsigned integer pixels of a TIFF whose 0 is white, made 0-is-black; DataError for other types."""
    if pixels.dtype.kind != "u":
        raise DataError(f"{path} is a {pixels.dtype} TIFF whose 0 is white (photometric MINISWHITE); save it as grey")
    return np.iinfo(pixels.dtype).max - pixels


def _cmyk_to_rgb(pixels: np.ndarray, inks: int, inkset: int, path: Path) -> np.ndarray:
    """RGB (and any extra samples) of an unsigned integer CMYK TIFF, as Pillow converts CMYK: each colour
    is (1 - ink) * (1 - black); DataError for other inks, which have no RGB meaning."""
    if inks != 4 or inkset != _TIFF_INKSET_CMYK or pixels.dtype.kind != "u":
        raise DataError(
            f"{path} is a TIFF of {inks} {pixels.dtype} inks (photometric SEPARATED); expected one grey or RGB(A) "
            "image: save it as grey or RGB"
        )
    full = float(np.iinfo(pixels.dtype).max)
    inks_used = pixels[..., :4].astype(np.float64)
    rgb = (full - inks_used[..., :3]) * (full - inks_used[..., 3:4]) / full
    return np.concatenate([np.round(rgb).astype(pixels.dtype), pixels[..., 4:]], axis=-1)


def _check_finite(pixels: np.ndarray, path: Path) -> None:
    """DataError counting NaN and inf pixels: NaN would make the whole image 0, inf the loss NaN."""
    if pixels.dtype.kind not in "fc" or np.isfinite(pixels).all():
        return
    counts = [(int(np.isnan(pixels).sum()), "NaN"), (int(np.isinf(pixels).sum()), "inf")]
    found = " and ".join(f"{count} {name}" for count, name in counts if count)
    raise DataError(f"{path} has {found} pixel value(s); expected finite values (replace them, e.g. with 0)")


def _without_alpha(pixels: np.ndarray, has_alpha: bool, path: Path) -> tuple[np.ndarray, bool]:
    """(H, W) grey or (H, W, 3) colour pixels, and whether they are the alpha channel.

    Only a channel the file declares as alpha (`has_alpha`) is alpha: it is dropped, unless the colour
    channels are one colour everywhere and the alpha varies; then the alpha is the drawing (a mask
    painted in transparency). Any other 2 or 4 channels are refused, as they are not grey or RGB.
    """
    while pixels.ndim > 3 and pixels.shape[0] == 1:  # a TIFF's page and sample axes
        pixels = pixels[0]
    if pixels.ndim == 3 and pixels.shape[0] == 1 and pixels.shape[-1] > 4:  # one page of a TIFF stack
        pixels = pixels[0]
    if pixels.ndim == 3 and has_alpha and pixels.shape[-1] in (2, 4):
        colour, alpha = pixels[..., :-1], pixels[..., -1]
        if np.all(colour == colour[:1, :1]) and alpha.min() != alpha.max():
            return alpha, True
        pixels = colour
    if pixels.ndim == 3 and pixels.shape[-1] == 1:
        pixels = pixels[..., 0]
    if pixels.ndim == 2 or (pixels.ndim == 3 and pixels.shape[-1] == 3):
        return pixels, False
    if pixels.ndim == 3 and pixels.shape[-1] in (2, 4):
        raise DataError(
            f"{path} has {pixels.shape[-1]} channels; expected one grey or RGB(A) image "
            "(the file marks no channel as alpha)"
        )
    raise DataError(f"{path} has pixel array shape {pixels.shape}; expected one grey or RGB(A) image")


def _as_grey(pixels: np.ndarray) -> tuple[np.ndarray, bool]:
    """2-D image in its own dtype, and whether it was converted from colour."""
    if pixels.ndim == 2:
        return pixels, False
    grey = pixels @ _LUMINANCE
    return (np.round(grey).astype(pixels.dtype) if pixels.dtype.kind in "ui" else grey), True


def _as_labels(pixels: np.ndarray, path: Path) -> tuple[np.ndarray, bool]:
    """2-D mask: an integer label image (more than 2 values) as stored, any other mask as uint8 {0, 1};
    and whether it is a colour mask of more than 2 colours, read as binary.

    Any non-zero pixel is a bead, except in lossy JPEG masks, which are thresholded at half their range.
    A colour mask is binary (any non-black pixel is a bead): its colours say nothing about which beads
    touch. One without a black pixel has no background and is refused.
    """
    if pixels.ndim == 3 and path.suffix.lower() not in _LOSSY_EXTENSIONS:
        if np.all(pixels == pixels[..., :1]):
            pixels = pixels[..., 0]  # grey saved as RGB
        else:
            return _colour_mask(pixels, path)
    if pixels.ndim == 3:
        pixels = pixels.max(axis=-1)
    if path.suffix.lower() in _LOSSY_EXTENSIONS:
        return (pixels > np.iinfo(pixels.dtype).max / 2).astype(np.uint8), False
    values = np.unique(pixels)
    if values.size <= 2:
        return (pixels != 0).astype(np.uint8), False
    if not np.array_equal(values, np.round(values)):
        raise DataError(
            f"{path} has {values.size} distinct non-integer values; expected a binary mask "
            "(0 = background, non-zero = bead) or an integer label image"
        )
    return pixels, False


def _colour_mask(pixels: np.ndarray, path: Path) -> tuple[np.ndarray, bool]:
    """{0, 1} mask of a colour mask (black is background), and whether it has more than 2 colours."""
    beads = pixels.any(axis=-1)
    n_colours = len(np.unique(pixels.reshape(-1, pixels.shape[-1]), axis=0))
    if beads.all() and n_colours > 1:
        raise DataError(
            f"{path} is a colour image of {n_colours} colours without a black pixel; expected a mask "
            "(0 = black = background, non-zero = bead)"
        )
    return beads.astype(np.uint8), n_colours > 2


class _BitDepths:
    """Which images of a folder are scaled as 8-bit and which as 16-bit though they hold only 8-bit values.

    Scaling by bit depth keeps relative brightness, but an 8-bit picture saved at 16 bits beside 8-bit
    ones would read 256x darker than them: that mix is refused (`check`)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.eight_bit: Path | None = None
        self.narrow_wide: tuple[Path, np.ndarray] | None = None

    def add(self, pixels: np.ndarray, path: Path) -> None:
        scale = _full_scale(pixels)
        if scale == 255 and self.eight_bit is None:
            self.eight_bit = path
        elif scale == 65535 and self.narrow_wide is None and pixels.max() <= 255:
            self.narrow_wide = path, pixels

    def check(self) -> None:
        if self.eight_bit is None or self.narrow_wide is None:
            return
        path, pixels = self.narrow_wide
        raise DataError(
            f"{self.folder} mixes 8-bit images (e.g. {self.eight_bit}) with {8 * pixels.dtype.itemsize}-bit "
            f"images that hold only 8-bit values (e.g. {path}, brightest pixel {pixels.max()}), which would "
            "read 256x darker; save all images at one bit depth"
        )


def _full_scale(pixels: np.ndarray) -> int | None:
    """What integer pixels are divided by: 255 for 8-bit, 65535 for wider integers whose values fit in
    0..65535 (16-bit, and 32-bit holding 16-bit values); None for pixels that are min-max scaled."""
    if pixels.dtype.kind not in "ui":
        return None
    full_scale = 255 if pixels.dtype.itemsize == 1 else 65535
    return full_scale if pixels.min() >= 0 and pixels.max() <= full_scale else None


def _to_unit_range(pixels: np.ndarray) -> np.ndarray:
    """Float32 in [0, 1]: integers by their bit depth (`_full_scale`), floats min-max scaled if outside,
    other integers min-max scaled."""
    if pixels.dtype.kind == "b":
        return pixels.astype(np.float32)
    if (full_scale := _full_scale(pixels)) is not None:
        return (pixels / full_scale).astype(np.float32)
    low, high = pixels.min(), pixels.max()
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


def _warn_skipped(skipped: Skipped) -> None:
    """One warning per folder that holds regular files not read for their extension, naming them: a
    picture saved as .bmp, .gif or .webp would silently leave the data set."""
    for folder, files in skipped:
        if files:
            warnings.warn(
                f"{folder}: skipped {len(files)} file(s) that are not read for their extension: "
                f"{_listing([path.name for path in files])}; only {', '.join(IMAGE_EXTENSIONS)} files are read",
                UserWarning,
                stacklevel=3,
            )

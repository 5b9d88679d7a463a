"""The data package: loading user folders, statistics, the split, synthetic beads and training batches."""

from __future__ import annotations

import math
import re
import subprocess
import sys
import unicodedata
import warnings
from pathlib import Path

import keras
import numpy as np
import pytest
import tifffile
from PIL import Image

from data import (
    DataError,
    DeviceBatches,
    DihedralTraining,
    TrainingBatches,
    dataset_stats,
    device_batches,
    dihedral,
    epoch_images,
    format_stats_table,
    load_dataset,
    load_mask_pairs,
    make_microbeads,
    objects_per_image,
    stratified_split,
    undo_dihedral,
    write_microbeads,
)
from data._loader import read_image


def write(path: Path, pixels: np.ndarray) -> Path:
    """Save `pixels` as `path`, TIFF through tifffile and everything else through Pillow."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix in (".tif", ".tiff"):
        tifffile.imwrite(path, pixels)
    else:
        Image.fromarray(pixels).save(path)
    return path


def ramp(height: int = 32, width: int = 32, dtype: type = np.uint8, top: int = 255) -> np.ndarray:
    """A horizontal ramp from 0 to `top`: every column different, easy to check after scaling."""
    return np.tile(np.linspace(0, top, width), (height, 1)).round().astype(dtype)


def disc_mask(height: int = 32, width: int = 32, value: int = 255) -> np.ndarray:
    """A disc of `value` on 0, the shape of one bead."""
    y, x = np.mgrid[:height, :width]
    return np.where((y - height / 2) ** 2 + (x - width / 2) ** 2 < (min(height, width) / 4) ** 2, value, 0).astype(
        np.uint8
    )


def dataset(root: Path, stems: list[str], image_ext: str = ".png", mask_ext: str = ".png") -> Path:
    """A valid dataset folder: an 8-bit ramp image and a disc mask per stem."""
    for stem in stems:
        write(root / "images" / f"{stem}{image_ext}", ramp())
        write(root / "masks" / f"{stem}{mask_ext}", disc_mask())
    return root


def masks_with_counts(counts: list[int], size: int = 32) -> np.ndarray:
    """Masks whose image i holds counts[i] isolated single-pixel objects."""
    masks = np.zeros((len(counts), size, size, 1), np.float32)
    rows, cols = np.divmod(np.arange(size * size // 4), size // 2)
    for mask, count in zip(masks, counts, strict=True):
        mask[2 * rows[:count], 2 * cols[:count]] = 1
    return masks


# --- load_dataset -------------------------------------------------------------------------------


def test_load_pairs_by_stem_across_extensions_and_sorts(tmp_path):
    write(tmp_path / "images" / "b.tif", ramp())
    write(tmp_path / "images" / "a.png", ramp()[:, ::-1])
    write(tmp_path / "images" / "c.jpg", np.full((32, 32), 200, np.uint8))
    write(tmp_path / "masks" / "a.tif", disc_mask(value=1))
    write(tmp_path / "masks" / "b.png", disc_mask())
    write(tmp_path / "masks" / "c.png", np.zeros((32, 32), np.uint8))

    images, masks = load_dataset(tmp_path)

    assert images.shape == masks.shape == (3, 32, 32, 1)
    assert images.dtype == masks.dtype == np.float32
    np.testing.assert_allclose(images[0, ..., 0], ramp()[:, ::-1] / 255, atol=1e-6)
    np.testing.assert_allclose(images[1, ..., 0], ramp() / 255, atol=1e-6)
    np.testing.assert_allclose(images[2], 200 / 255, atol=3 / 255)
    np.testing.assert_array_equal(masks[0, ..., 0], disc_mask(value=1))
    np.testing.assert_array_equal(masks[1, ..., 0], disc_mask(value=1))
    assert masks[2].sum() == 0


@pytest.mark.parametrize("ext", [".tif", ".png"])
def test_16_bit_images_are_scaled_by_the_dtype_range(tmp_path, ext):
    pixels = ramp(dtype=np.uint16, top=4095)
    write(tmp_path / "images" / f"a{ext}", pixels)
    write(tmp_path / "masks" / "a.png", disc_mask())

    images, _ = load_dataset(tmp_path)

    np.testing.assert_allclose(images[0, ..., 0], pixels / 65535, rtol=1e-6)
    assert images.max() == pytest.approx(4095 / 65535)


def test_float_tiff_outside_unit_range_is_min_max_scaled(tmp_path):
    write(tmp_path / "images" / "a.tif", ramp().astype(np.float32) * 10 - 300)
    write(tmp_path / "masks" / "a.png", disc_mask())

    images, _ = load_dataset(tmp_path)

    assert images.min() == 0.0 and images.max() == 1.0
    np.testing.assert_allclose(images[0, 0, :, 0], ramp()[0] / 255, atol=1e-6)


def test_jpeg_mask_is_thresholded_at_half_range(tmp_path):
    write(tmp_path / "images" / "a.jpg", ramp())
    write(tmp_path / "masks" / "a.jpg", disc_mask())

    images, masks = load_dataset(tmp_path)

    np.testing.assert_allclose(images[0, ..., 0], ramp() / 255, atol=0.05)
    assert set(np.unique(masks)) == {0.0, 1.0}
    assert np.mean(masks[0, ..., 0] != disc_mask(value=1)) < 0.02


def test_image_size_resizes_and_masks_stay_binary(tmp_path):
    write(tmp_path / "images" / "a.png", ramp(64, 64))
    write(tmp_path / "masks" / "a.png", disc_mask(64, 64))
    write(tmp_path / "images" / "b.png", ramp(32, 32))
    write(tmp_path / "masks" / "b.png", disc_mask(32, 32))

    square_images, square_masks = load_dataset(tmp_path, image_size=32)
    images, masks = load_dataset(tmp_path, image_size=(16, 24))

    assert square_images.shape == square_masks.shape == (2, 32, 32, 1)
    assert images.shape == masks.shape == (2, 16, 24, 1)
    assert set(np.unique(square_masks)) == set(np.unique(masks)) == {0.0, 1.0}
    assert 0.0 <= images.min() and images.max() <= 1.0
    assert abs(square_masks[0].mean() - disc_mask(value=1).mean()) < 0.02


def test_hidden_and_non_image_files_are_ignored(tmp_path):
    dataset(tmp_path, ["a"])
    (tmp_path / "images" / "Thumbs.db").write_bytes(b"\x00junk")
    (tmp_path / "images" / ".a.png").write_bytes(b"not a png")
    (tmp_path / "masks" / "notes.txt").write_text("masks drawn by hand")

    with pytest.warns(UserWarning, match="skipped 1 file") as record:
        images, _ = load_dataset(tmp_path)

    assert len(images) == 1
    assert [str(warning.message).split(": skipped")[0] for warning in record] == [
        str(tmp_path / "images"),
        str(tmp_path / "masks"),
    ]
    assert not any(".a.png" in str(warning.message) for warning in record)


def test_label_image_masks_warn_once_and_become_binary(tmp_path):
    labels = np.zeros((32, 32), np.uint16)
    labels[2:6, 2:6], labels[10:14, 10:14], labels[20:24, 3:7] = 1, 2, 300
    for stem in ("a", "b"):
        write(tmp_path / "images" / f"{stem}.png", ramp())
        write(tmp_path / "masks" / f"{stem}.tif", labels)

    with pytest.warns(UserWarning, match="2 mask") as record:
        _, masks = load_dataset(tmp_path)

    assert len(record) == 1
    np.testing.assert_array_equal(masks[1, ..., 0], labels > 0)


def test_rgb_images_warn_once_and_become_grey(tmp_path):
    rgb = np.zeros((32, 32, 3), np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 100, 200, 50
    for stem in ("a", "b"):
        write(tmp_path / "images" / f"{stem}.png", rgb)
        write(tmp_path / "masks" / f"{stem}.png", disc_mask())

    with pytest.warns(UserWarning, match="2 RGB image") as record:
        images, _ = load_dataset(tmp_path)

    assert len(record) == 1
    assert images.shape == (2, 32, 32, 1)
    np.testing.assert_allclose(images, round(0.299 * 100 + 0.587 * 200 + 0.114 * 50) / 255)


def test_grey_images_load_without_warnings(tmp_path):
    dataset(tmp_path, ["a", "b"])

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_dataset(tmp_path)


# --- load_dataset errors ------------------------------------------------------------------------


def test_missing_root_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="nowhere does not exist"):
        load_dataset(tmp_path / "nowhere")


@pytest.mark.parametrize("folder", ["images", "masks"])
def test_missing_folder_is_named(tmp_path, folder):
    dataset(tmp_path, ["a"])
    for file in (tmp_path / folder).iterdir():
        file.unlink()
    (tmp_path / folder).rmdir()

    with pytest.raises(DataError, match=f"{folder} does not exist"):
        load_dataset(tmp_path)


def test_folder_without_image_files_is_named(tmp_path):
    dataset(tmp_path, ["a"])
    (tmp_path / "images" / "a.png").unlink()
    (tmp_path / "images" / "readme.txt").write_text("no images yet")

    with pytest.raises(DataError, match=r"images has no image files; expected \.png"):
        load_dataset(tmp_path)


def test_images_without_masks_are_listed(tmp_path):
    dataset(tmp_path, ["paired"])
    for i in range(12):
        write(tmp_path / "images" / f"lonely{i:02d}.png", ramp())

    with pytest.raises(DataError, match=r"masks has no mask for 12 image\(s\): lonely00, .*lonely09 and 2 more"):
        load_dataset(tmp_path)


def test_masks_without_images_are_listed(tmp_path):
    dataset(tmp_path, ["paired"])
    write(tmp_path / "masks" / "orphan.png", disc_mask())

    with pytest.raises(DataError, match=r"images has no image for 1 mask\(s\): orphan;"):
        load_dataset(tmp_path)


def test_corrupt_file_is_named(tmp_path):
    dataset(tmp_path, ["a", "b"])
    (tmp_path / "masks" / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")

    with pytest.raises(DataError, match=r"b\.png cannot be read as an image"):
        load_dataset(tmp_path)


def test_image_and_mask_of_different_sizes_name_both(tmp_path):
    write(tmp_path / "images" / "a.png", ramp(32, 48))
    write(tmp_path / "masks" / "a.tif", disc_mask(32, 32))

    with pytest.raises(DataError, match=r"images.a\.png is 48x32 px but its mask .*masks.a\.tif is 32x32 px"):
        load_dataset(tmp_path)


def test_images_of_different_sizes_need_image_size(tmp_path):
    dataset(tmp_path, ["a"])
    write(tmp_path / "images" / "b.png", ramp(64, 64))
    write(tmp_path / "masks" / "b.png", disc_mask(64, 64))

    with pytest.raises(DataError, match=r"a\.png is 32x32 px, .*b\.png is 64x64 px; pass image_size"):
        load_dataset(tmp_path)
    assert load_dataset(tmp_path, image_size=32)[0].shape == (2, 32, 32, 1)


def test_same_stem_twice_in_one_folder_is_named(tmp_path):
    dataset(tmp_path, ["a"])
    write(tmp_path / "images" / "a.tif", ramp())

    with pytest.raises(DataError, match=r"a\.png and .*a\.tif have the same stem"):
        load_dataset(tmp_path)


def test_non_integer_mask_values_are_rejected(tmp_path):
    write(tmp_path / "images" / "a.png", ramp())
    write(tmp_path / "masks" / "a.tif", ramp().astype(np.float32) / 255)

    with pytest.raises(DataError, match=r"a\.tif has 32 distinct non-integer values; expected a binary mask"):
        load_dataset(tmp_path)


# --- load_dataset: pictures that would be read wrong -------------------------------------------


def test_nan_and_inf_pixels_are_counted_and_refused(tmp_path):
    pixels = ramp().astype(np.float32) / 255
    pixels[0, :2], pixels[1, 0] = np.nan, np.inf
    write(tmp_path / "images" / "a.tif", pixels)
    write(tmp_path / "masks" / "a.png", disc_mask())

    with pytest.raises(DataError, match=r"images.a\.tif has 2 NaN and 1 inf pixel value\(s\); expected finite"):
        load_dataset(tmp_path)
    with pytest.raises(DataError, match=r"a\.tif has 2 NaN and 1 inf pixel"):
        read_image(tmp_path / "images" / "a.tif")


@pytest.mark.parametrize("ext", [".jpg", ".tif"])
def test_cmyk_images_are_read_as_their_colours(tmp_path, ext):
    rgb = np.stack([ramp(), ramp()[:, ::-1], np.full((32, 32), 128, np.uint8)], axis=-1)
    cmyk = Image.fromarray(rgb).convert("CMYK")
    write(tmp_path / "masks" / "a.png", disc_mask())
    (tmp_path / "images").mkdir()
    if ext == ".tif":
        tifffile.imwrite(tmp_path / "images" / "a.tif", np.asarray(cmyk), photometric="separated")
    else:
        cmyk.save(tmp_path / "images" / "a.jpg", quality=95)

    with pytest.warns(UserWarning, match="1 RGB image"):
        images, _ = load_dataset(tmp_path)

    np.testing.assert_allclose(images[0, ..., 0], (rgb @ [0.299, 0.587, 0.114]) / 255, atol=0.03)


def test_a_tiff_whose_zero_is_white_and_a_palette_tiff_are_read_as_they_look(tmp_path):
    """MINISWHITE images were read inverted, palette images as their colour indices."""
    folder = tmp_path / "images"
    folder.mkdir()
    tifffile.imwrite(folder / "white.tif", 255 - ramp(), photometric="miniswhite")
    np.testing.assert_allclose(read_image(folder / "white.tif"), ramp() / 255)
    tifffile.imwrite(folder / "bits.tif", ramp() > 127, photometric="miniswhite")
    np.testing.assert_array_equal(read_image(folder / "bits.tif"), ramp() <= 127)

    colormap = np.zeros((3, 256), np.uint16)
    colormap[:, 1] = 65535  # index 1: white
    colormap[0, 2] = 65535  # index 2: red
    indices = (disc_mask() > 0).astype(np.uint8)
    indices[:2, :2] = 2
    tifffile.imwrite(folder / "palette.tif", indices, photometric="palette", colormap=colormap)
    expected = np.where(indices == 1, 1.0, np.where(indices == 2, 0.299, 0.0))
    np.testing.assert_allclose(read_image(folder / "palette.tif"), expected, atol=1e-4)


def test_a_two_channel_tiff_is_refused_unless_its_second_channel_is_alpha(tmp_path):
    two = np.stack([ramp(), disc_mask()], axis=-1)
    write(tmp_path / "masks" / "a.png", disc_mask())
    (tmp_path / "images").mkdir()
    tifffile.imwrite(tmp_path / "images" / "a.tif", two, photometric="minisblack", planarconfig="contig")

    with pytest.raises(DataError, match=r"a\.tif has 2 channels; expected one grey or RGB\(A\) image"):
        load_dataset(tmp_path)

    tifffile.imwrite(
        tmp_path / "images" / "a.tif", two, photometric="minisblack", planarconfig="contig", extrasamples=["unassalpha"]
    )
    np.testing.assert_allclose(load_dataset(tmp_path)[0][0, ..., 0], ramp() / 255, atol=1e-6)


def test_images_one_pixel_high_or_wide_keep_their_shape(tmp_path):
    """A row, a column, a dot and an RGB row read as (height, width): squeezing every axis of size 1 made a
    grey row one-dimensional (refused) and an RGB row 3 px high and 50 wide. A TIFF's leading page and
    sample axes still go."""
    row = (np.arange(50) * 5).astype(np.uint8)
    Image.fromarray(row[None, :]).save(tmp_path / "row.png")
    Image.fromarray(row[:, None]).save(tmp_path / "column.png")
    Image.fromarray(np.zeros((1, 1), np.uint8)).save(tmp_path / "dot.png")
    Image.fromarray(np.stack([row[None, :]] * 3, axis=-1)).save(tmp_path / "rgb_row.png")
    tifffile.imwrite(tmp_path / "page.tif", np.zeros((1, 20, 30), np.uint8))
    tifffile.imwrite(tmp_path / "pages.tif", np.zeros((1, 1, 20, 30), np.uint16))

    shapes = {path.stem: read_image(path).shape for path in tmp_path.iterdir()}

    assert shapes == {
        "row": (1, 50),
        "column": (50, 1),
        "dot": (1, 1),
        "rgb_row": (1, 50),
        "page": (20, 30),
        "pages": (20, 30),
    }
    np.testing.assert_allclose(read_image(tmp_path / "rgb_row.png")[0], row / 255, atol=1e-6)


def test_a_picture_drawn_only_in_its_alpha_channel_is_read_from_the_alpha(tmp_path):
    drawn = np.zeros((32, 32, 4), np.uint8)
    drawn[..., 3] = disc_mask()
    shaded = np.full((32, 32, 4), 255, np.uint8)
    shaded[..., 3] = ramp()
    write(tmp_path / "images" / "a.png", shaded)
    write(tmp_path / "masks" / "a.png", drawn)

    with pytest.warns(UserWarning, match=r"2 file\(s\) drawn only in their alpha channel") as record:
        images, masks = load_dataset(tmp_path)

    assert len(record) == 1
    np.testing.assert_array_equal(masks[0, ..., 0], disc_mask(value=1))
    np.testing.assert_allclose(images[0, ..., 0], ramp() / 255, atol=1e-6)


def test_8_bit_and_16_bit_images_holding_8_bit_values_are_not_mixed(tmp_path):
    dataset(tmp_path, ["a"])
    write(tmp_path / "images" / "b.png", ramp(dtype=np.uint16, top=200))
    write(tmp_path / "masks" / "b.png", disc_mask())

    with pytest.raises(
        DataError,
        match=r"images mixes 8-bit images \(e\.g\. .*a\.png\) with 16-bit images that hold only 8-bit values "
        r"\(e\.g\. .*b\.png, brightest pixel 200\), which would read 256x darker; save all images at one bit depth",
    ):
        load_dataset(tmp_path)

    write(tmp_path / "images" / "b.png", ramp(dtype=np.uint16, top=4095))
    assert load_dataset(tmp_path)[0][1].max() == pytest.approx(4095 / 65535)
    (tmp_path / "images" / "a.png").unlink()
    write(tmp_path / "images" / "a.png", ramp(dtype=np.uint16, top=200))
    assert load_dataset(tmp_path)[0][0].max() == pytest.approx(200 / 65535)


def test_32_bit_integer_images_are_scaled_as_16_bit_and_checked_as_such(tmp_path):
    dataset(tmp_path, ["a"])
    write(tmp_path / "images" / "b.tif", ramp(dtype=np.int32, top=255))
    write(tmp_path / "masks" / "b.png", disc_mask())

    with pytest.raises(DataError, match=r"with 32-bit images that hold only 8-bit values \(e\.g\. .*b\.tif"):
        load_dataset(tmp_path)

    (tmp_path / "images" / "a.png").unlink()
    write(tmp_path / "images" / "a.tif", ramp(dtype=np.int32, top=255))
    assert load_dataset(tmp_path)[0].max() == pytest.approx(255 / 65535)


def test_files_of_other_formats_are_named_in_one_warning_per_folder(tmp_path):
    dataset(tmp_path, ["a", "b"])
    for stem in ("c", "d"):
        Image.fromarray(ramp()).save(tmp_path / "images" / f"{stem}.bmp")
        Image.fromarray(disc_mask()).save(tmp_path / "masks" / f"{stem}.gif")

    with pytest.warns(UserWarning) as record:
        images, _ = load_dataset(tmp_path)

    assert len(images) == 2
    assert [str(warning.message) for warning in record] == [
        f"{tmp_path / folder}: skipped 2 file(s) that are not read for their extension: c{ext}, d{ext}; "
        "only .png, .tif, .tiff, .jpg, .jpeg files are read"
        for folder, ext in (("images", ".bmp"), ("masks", ".gif"))
    ]


def test_a_file_given_as_the_data_folder_is_named_as_a_file(tmp_path):
    file = write(tmp_path / "a.png", ramp())

    with pytest.raises(
        DataError, match=rf"^{re.escape(str(file))} is a file; expected a folder with images/ and masks/$"
    ):
        load_dataset(file)


@pytest.mark.parametrize("kind", ["folder", "broken link"])
def test_an_image_entry_that_is_no_file_is_named(tmp_path, kind):
    dataset(tmp_path, ["a", "b"])
    entry = tmp_path / "images" / "b.png"
    entry.unlink()
    if kind == "folder":
        entry.mkdir()
    else:
        entry.symlink_to(tmp_path / "nowhere.png")

    with pytest.raises(DataError, match=rf"images.b\.png is a {kind}; expected an image file$"):
        load_dataset(tmp_path)


def test_stems_pair_across_unicode_normal_forms(tmp_path):
    write(tmp_path / "images" / f"{unicodedata.normalize('NFC', 'café')}.png", ramp())
    write(tmp_path / "masks" / f"{unicodedata.normalize('NFD', 'café')}.png", disc_mask())

    images, masks = load_dataset(tmp_path)

    assert len(images) == len(masks) == 1


def test_make_data_refuses_a_folder_that_holds_images(tmp_path):
    dataset(tmp_path, ["bead_0000", "mine"])
    before = (tmp_path / "images" / "bead_0000.png").read_bytes()

    with pytest.raises(DataError, match=r"images already holds 2 image file\(s\); give a new or empty folder"):
        write_microbeads(tmp_path, 3, size=32)

    assert (tmp_path / "images" / "bead_0000.png").read_bytes() == before
    (tmp_path / "masks" / "notes.txt").write_text("kept")
    for path in (tmp_path / "images").iterdir():
        path.unlink()
    with pytest.raises(DataError, match=r"masks already holds 2 image file\(s\)"):
        write_microbeads(tmp_path, 3, size=32)
    assert sorted(path.name for path in (tmp_path / "images").iterdir()) == []


def test_colour_masks_are_read_as_binary_with_a_warning_or_refused_without_background(tmp_path):
    labels = np.zeros((32, 32, 3), np.uint8)
    labels[2:8, 2:8], labels[2:8, 8:14], labels[20:26, 20:26] = (200, 10, 10), (10, 200, 10), (10, 10, 200)
    write(tmp_path / "data" / "masks" / "a.png", disc_mask())
    write(tmp_path / "pred" / "a.png", labels)

    with pytest.warns(UserWarning, match=r"1 colour mask\(s\) .* read as binary: every non-black pixel is a bead"):
        _, _, predictions = load_mask_pairs(tmp_path / "data", tmp_path / "pred")

    np.testing.assert_array_equal(predictions[0], labels.any(axis=-1))
    labels[labels.sum(axis=-1) == 0] = (0, 0, 90)
    write(tmp_path / "pred" / "a.png", labels)
    with pytest.raises(DataError, match=r"pred.a\.png is a colour image of 4 colours without a black pixel"):
        load_mask_pairs(tmp_path / "data", tmp_path / "pred")


# --- statistics ---------------------------------------------------------------------------------


def hand_built_masks() -> np.ndarray:
    """Image 0: areas 4, 1, 1 (diagonal neighbours are separate objects), 6; image 1 empty; image 2: 9."""
    masks = np.zeros((3, 10, 10), np.float32)
    masks[0, 0:2, 0:2] = 1
    masks[0, 5, 5] = masks[0, 6, 6] = 1
    masks[0, 8:10, 0:3] = 1
    masks[2, 3:6, 3:6] = 1
    return masks


def test_dataset_stats_of_known_components():
    stats = dataset_stats(hand_built_masks()[..., None])

    assert stats == {
        "n_images": 3.0,
        "image_height": 10.0,
        "image_width": 10.0,
        "objects_per_image_mean": pytest.approx(5 / 3),
        "objects_per_image_median": 1.0,
        "objects_per_image_min": 0.0,
        "objects_per_image_max": 4.0,
        "foreground_fraction": pytest.approx(21 / 300),
        "object_area_mean": pytest.approx(4.2),
        "object_area_median": 4.0,
    }
    np.testing.assert_array_equal(objects_per_image(hand_built_masks()), [4, 0, 1])


def test_dataset_stats_without_objects_has_zero_area():
    stats = dataset_stats(np.zeros((2, 8, 8, 1)))

    assert stats["objects_per_image_max"] == 0.0 and stats["object_area_mean"] == 0.0


def test_format_stats_table_reads_like_the_report():
    table = format_stats_table(dataset_stats(hand_built_masks()))

    assert "Objects per image   | 1.7 (0 to 4), median 1" in table
    assert "Foreground fraction | 7.0 %" in table
    assert "Object size         | ~4 px" in table
    assert "Image size          | 10 x 10 px" in table


# --- stratified_split ---------------------------------------------------------------------------


def test_split_is_deterministic_disjoint_and_complete():
    masks = masks_with_counts(list(range(40)))

    train, val = stratified_split(masks, val_fraction=0.15, seed=3)

    np.testing.assert_array_equal(np.sort(np.concatenate([train, val])), np.arange(40))
    assert len(val) == 6
    for again, first in zip(stratified_split(masks, val_fraction=0.15, seed=3), (train, val), strict=True):
        np.testing.assert_array_equal(again, first)
    assert not np.array_equal(stratified_split(masks, val_fraction=0.15, seed=4)[1], val)


def test_split_puts_every_crowding_level_in_validation():
    counts = np.random.default_rng(0).permutation(50)
    masks = masks_with_counts(list(counts))

    for seed in range(10):
        _, val = stratified_split(masks, val_fraction=0.2, n_bins=5, seed=seed)
        assert sorted(counts[val] // 10) == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]


def test_split_falls_back_to_random_when_bins_are_too_small():
    masks = masks_with_counts([0, 0, 0, 5, 5, 9])

    with pytest.warns(UserWarning, match="too few to stratify"):
        train, val = stratified_split(masks, val_fraction=0.5)

    assert len(train) == len(val) == 3


def test_split_of_one_image_is_a_data_error():
    with pytest.raises(DataError, match="cannot split 1 image.*need at least 2 images"):
        stratified_split(masks_with_counts([3]))


def test_split_of_two_images_gives_one_each():
    train, val = stratified_split(masks_with_counts([1, 2]))

    assert len(train) == len(val) == 1


def library_split(counts: np.ndarray, val_fraction: float, n_bins: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The split as it was computed with pandas and scikit-learn, which existing studies were split with."""
    import pandas as pd
    from sklearn.model_selection import train_test_split

    n_images = len(counts)
    n_val = min(max(math.ceil(n_images * val_fraction), 1), n_images - 1)
    n_bins = min(n_bins, n_val, n_images - n_val)
    bins = np.nan_to_num(pd.qcut(counts, q=n_bins, labels=False, duplicates="drop"), nan=0).astype(int)
    stratify = bins if np.bincount(bins).min() >= 2 else None
    train, val = train_test_split(np.arange(n_images), test_size=n_val, random_state=seed, stratify=stratify)
    return np.sort(train), np.sort(val)


def library_folds(counts: np.ndarray, k: int, seed: int, n_bins: int) -> list[np.ndarray]:
    """The cross-validation folds as they were computed with pandas and scikit-learn."""
    import pandas as pd
    from sklearn.model_selection import KFold, StratifiedKFold

    n_bins = max(1, min(n_bins, len(counts) // k))
    bins = np.nan_to_num(pd.qcut(counts, q=n_bins, labels=False, duplicates="drop"), nan=0).astype(int)
    indices = np.arange(len(counts))
    if np.bincount(bins).min() >= k:
        folds = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed).split(indices, bins)
    else:
        folds = KFold(n_splits=k, shuffle=True, random_state=seed).split(indices)
    return [np.sort(val) for _, val in folds]


def object_counts(rng: np.random.Generator) -> np.ndarray:
    """Objects per image of a random data set: 2 to 120 images, counts from few values with many ties (sparse
    images) to a wide spread (the users' 12 to 254 beads)."""
    n_images = int(rng.integers(2, 121))
    kind = rng.integers(4)
    if kind == 0:
        return rng.integers(0, rng.integers(1, 4), n_images)
    if kind == 1:
        return rng.integers(12, 255, n_images)
    if kind == 2:
        return rng.poisson(rng.uniform(0.5, 110), n_images)
    return np.full(n_images, rng.integers(0, 5))


def test_split_and_folds_match_pandas_and_scikit_learn_draw_for_draw():
    """Our split must put every image on the side where the libraries put it, or existing studies would
    train on other images: 3,000 random data sets (ties, single values, 2 to 120 images), seeds and sizes."""
    from data._split import folds_by_counts, split_by_counts

    rng = np.random.default_rng(0)
    stratified = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        for _ in range(2000):
            counts = object_counts(rng)
            val_fraction = float(rng.choice([0.1, 0.15, 0.2, 0.25, 0.3, 0.5, 0.9]))
            n_bins, seed = int(rng.integers(1, 8)), int(rng.integers(0, 2**31))
            ours = split_by_counts(counts, val_fraction, n_bins, seed)
            theirs = library_split(counts, val_fraction, n_bins, seed)
            assert [side.tolist() for side in ours] == [side.tolist() for side in theirs], (counts, val_fraction, seed)
        for _ in range(1000):
            counts = object_counts(rng)
            k = int(rng.integers(2, min(len(counts), 10) + 1)) if len(counts) >= 2 else 2
            n_bins, seed = int(rng.integers(1, 8)), int(rng.integers(0, 2**31))
            ours, theirs = folds_by_counts(counts, k, seed, n_bins), library_folds(counts, k, seed, n_bins)
            assert [fold.tolist() for fold in ours] == [fold.tolist() for fold in theirs], (counts, k, seed)
            stratified += len({tuple(fold) for fold in ours}) == k
    assert stratified > 500


def test_quantile_bins_are_pandas_qcut_with_duplicate_edges_dropped():
    import pandas as pd

    from data._split import quantile_bins

    rng = np.random.default_rng(1)
    for _ in range(2000):
        values, n_bins = object_counts(rng), int(rng.integers(1, 12))
        expected = np.nan_to_num(pd.qcut(values, q=n_bins, labels=False, duplicates="drop"), nan=0).astype(int)
        assert quantile_bins(values, n_bins).tolist() == expected.tolist(), (values, n_bins)


def test_finding_the_split_loads_neither_pandas_nor_scikit_learn():
    code = (
        "import sys; import numpy as np; from data import stratified_split, stratified_folds\n"
        "masks = np.zeros((20, 16, 16, 1), np.float32)\n"
        "for count, mask in enumerate(masks): mask.reshape(-1)[: 2 * count : 2] = 1\n"
        "stratified_split(masks, 0.2, seed=1); stratified_folds(masks, 4, seed=1)\n"
        "print(sorted(name for name in ('pandas', 'sklearn') if name in sys.modules))"
    )
    root = Path(__file__).resolve().parent.parent
    found = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root, timeout=120)
    assert found.returncode == 0, found.stderr
    assert found.stdout.strip() == "[]"


# --- synthetic microbeads -----------------------------------------------------------------------


def within(value: float, target: float, tolerance: float = 0.25) -> bool:
    return abs(value - target) <= tolerance * target


def test_synthetic_beads_match_the_users_statistics_at_256():
    images, masks = make_microbeads(20, size=256, seed=0)
    stats = dataset_stats(masks)

    assert images.shape == masks.shape == (20, 256, 256, 1)
    assert images.dtype == masks.dtype == np.float32
    assert 0.0 <= images.min() and images.max() <= 1.0
    assert set(np.unique(masks)) == {0.0, 1.0}
    assert within(stats["objects_per_image_mean"], 109)
    assert within(stats["foreground_fraction"], 0.115)
    assert within(stats["object_area_mean"], 69)
    assert stats["objects_per_image_min"] < 50 and stats["objects_per_image_max"] > 200


def test_synthetic_beads_scale_with_image_size():
    stats = dataset_stats(make_microbeads(4, size=512, seed=1)[1])

    assert within(stats["object_area_mean"], 276)
    assert within(stats["foreground_fraction"], 0.115)


def test_synthetic_beads_are_brighter_than_background():
    images, masks = make_microbeads(4, size=128, seed=2)

    assert images[masks == 1].mean() > images[masks == 0].mean() + 0.1


def test_synthetic_beads_are_deterministic_for_a_seed():
    first, again, other = (make_microbeads(3, size=64, seed=seed) for seed in (5, 5, 6))

    np.testing.assert_array_equal(first[0], again[0])
    np.testing.assert_array_equal(first[1], again[1])
    assert not np.array_equal(first[1], other[1])


def test_written_microbeads_load_back_like_user_data(tmp_path):
    out = write_microbeads(tmp_path / "beads", 3, size=64, seed=7)
    images, masks = make_microbeads(3, size=64, seed=7)

    loaded_images, loaded_masks = load_dataset(out)

    assert sorted(path.name for path in (out / "images").iterdir()) == [f"bead_000{i}.png" for i in range(3)]
    np.testing.assert_allclose(loaded_images, images, atol=0.5 / 255 + 1e-6)
    np.testing.assert_array_equal(loaded_masks, masks)


# --- TrainingBatches ----------------------------------------------------------------------------


def random_pairs(n: int = 10, height: int = 16, width: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """Random images with the mask `image > 0.5`, so any mismatched transform breaks the relation."""
    images = np.random.default_rng(0).uniform(size=(n, height, width, 1)).astype(np.float32)
    return images, (images > 0.5).astype(np.float32)


def all_batches(batches: TrainingBatches) -> list[tuple[np.ndarray, np.ndarray]]:
    return [batches[i] for i in range(len(batches))]


def test_batches_have_the_right_shapes_and_length():
    batches = TrainingBatches(*random_pairs(10), 4)

    assert len(batches) == 3
    assert [x.shape for x, _ in all_batches(batches)] == [(4, 16, 16, 1), (4, 16, 16, 1), (2, 16, 16, 1)]
    assert all(x.dtype == y.dtype == np.float32 for x, y in all_batches(batches))
    with pytest.raises(IndexError):
        batches[3]


def test_dropping_the_remainder_keeps_one_batch_shape_and_varies_the_left_out_samples():
    ids = np.arange(10, dtype=np.float32)[:, None, None, None] * np.ones((1, 8, 8, 1), np.float32)
    batches = TrainingBatches(ids, ids, 4, drop_remainder=True, seed=0)

    left_out = []
    for _ in range(4):
        assert len(batches) == 2
        assert [x.shape for x, _ in all_batches(batches)] == [(4, 8, 8, 1)] * 2
        seen = np.concatenate([x[:, 0, 0, 0] for x, _ in all_batches(batches)])
        assert len(set(seen)) == 8
        left_out.append(frozenset(set(range(10)) - set(seen)))
        batches.on_epoch_end()
    assert len(set(left_out)) > 1


@pytest.mark.parametrize(
    ("n_images", "batch_size", "drop_remainder", "expected"),
    [(10, 4, False, 10), (10, 4, True, 8), (8, 4, True, 8), (3, 4, True, 3), (73, 16, True, 64)],
)
def test_epoch_images(n_images, batch_size, drop_remainder, expected):
    assert epoch_images(n_images, batch_size, drop_remainder) == expected
    batches = TrainingBatches(*random_pairs(n_images), batch_size, drop_remainder=drop_remainder)
    assert sum(len(x) for x, _ in all_batches(batches)) == expected


@pytest.mark.parametrize("shape", [(16, 16), (16, 24)])
def test_augmentation_moves_image_and_mask_together(shape):
    images, masks = random_pairs(12, *shape)
    batches = TrainingBatches(images, masks, 4, seed=1)

    for _ in range(3):
        for x, y in all_batches(batches):
            assert x.shape[1:3] == shape
            np.testing.assert_array_equal(y, x > 0.5)
        batches.on_epoch_end()
    assert any(not np.array_equal(x, images[i * 4 : (i + 1) * 4]) for i, (x, _) in enumerate(all_batches(batches)))


def test_augmentation_uses_all_eight_symmetries():
    pattern = np.arange(16, dtype=np.float32).reshape(1, 4, 4, 1)
    batches = TrainingBatches(np.repeat(pattern, 64, axis=0), np.zeros((64, 4, 4, 1)), 64)

    x, _ = batches[0]

    assert len({sample.tobytes() for sample in x}) == 8


def test_batches_are_deterministic_for_a_seed():
    first, again, other = (TrainingBatches(*random_pairs(), 4, seed=seed) for seed in (2, 2, 3))

    for _ in range(2):
        for (x1, y1), (x2, y2) in zip(all_batches(first), all_batches(again), strict=True):
            np.testing.assert_array_equal(x1, x2)
            np.testing.assert_array_equal(y1, y2)
        first.on_epoch_end()
        again.on_epoch_end()
    assert not np.array_equal(all_batches(first)[0][0], all_batches(other)[0][0])


def test_every_sample_is_seen_once_per_epoch_in_a_new_order():
    ids = np.arange(10, dtype=np.float32)[:, None, None, None] * np.ones((1, 8, 8, 1), np.float32)
    batches = TrainingBatches(ids, ids, 3, seed=0)

    orders = []
    for _ in range(2):
        orders.append(np.concatenate([x[:, 0, 0, 0] for x, _ in all_batches(batches)]))
        batches.on_epoch_end()

    for order in orders:
        np.testing.assert_array_equal(np.sort(order), np.arange(10))
    assert not np.array_equal(orders[0], orders[1])


def test_plain_batches_keep_order_and_pixels():
    images, masks = random_pairs(5)
    batches = TrainingBatches(images, masks, 2, augment=False, shuffle=False, workers=2, max_queue_size=4)

    np.testing.assert_array_equal(np.concatenate([x for x, _ in all_batches(batches)]), images)
    assert (batches.workers, batches.max_queue_size) == (2, 4)


# --- flips and rotations on the device ----------------------------------------------------------


@pytest.mark.parametrize("shape", [(6, 6), (4, 6)])
def test_device_flips_match_the_host_batches_and_undo(shape):
    images = np.random.default_rng(0).normal(size=(16, *shape, 2)).astype(np.float32)
    square = shape[0] == shape[1]
    transforms = np.arange(16) % 8 if square else np.arange(16) % 4 * 2
    expected = np.stack([host_dihedral(image, t) for image, t in zip(images, transforms, strict=True)])

    turned = keras.ops.convert_to_numpy(dihedral(images, keras.ops.convert_to_tensor(transforms), square))
    back = keras.ops.convert_to_numpy(undo_dihedral(turned, keras.ops.convert_to_tensor(transforms), square))

    np.testing.assert_array_equal(turned, expected)
    np.testing.assert_array_equal(back, images)


def host_dihedral(image: np.ndarray, transform: int) -> np.ndarray:
    """What the host-side augmentation does to one image (t >= 4 flips left-right, then t % 4 quarter turns)."""
    flipped = image[:, ::-1] if transform >= 4 else image
    return np.rot90(flipped, k=transform % 4, axes=(0, 1))


def test_dihedral_training_shows_each_image_in_a_random_view_and_predicts_plainly():
    """In training the output is `undo(network(view))` for one of the 8 views, drawn per image and step;
    elsewhere the wrapper is the network."""
    network = keras.Sequential([keras.Input((6, 6, 1)), keras.layers.Conv2D(1, 3, padding="same", use_bias=False)])
    wrapper = DihedralTraining(network, seed=3)
    images = np.random.default_rng(1).normal(size=(32, 6, 6, 1)).astype(np.float32)
    views = []
    for transform in range(8):
        transforms = keras.ops.full((32,), transform, "int32")
        views.append(keras.ops.convert_to_numpy(undo_dihedral(network(dihedral(images, transforms)), transforms)))

    np.testing.assert_allclose(keras.ops.convert_to_numpy(wrapper(images)), keras.ops.convert_to_numpy(network(images)))
    chosen = []
    for _ in range(2):
        output = keras.ops.convert_to_numpy(wrapper(images, training=True))
        for sample, out in enumerate(output):
            matches = [t for t in range(8) if np.allclose(out, views[t][sample], atol=1e-5)]
            assert matches, f"sample {sample} is in none of the 8 views"
            chosen.append(matches[0])
    assert len(set(chosen)) == 8


def test_device_batches_cut_the_host_batches_unflipped():
    """`DeviceBatches` (JAX) and the `tf.data` pipeline (TensorFlow) give full, unflipped batches of
    every image once per epoch, reshuffled; `DeviceBatches` in the order `TrainingBatches` draws."""
    images, masks = random_pairs(10)
    host = TrainingBatches(images, masks, 4, augment=False, drop_remainder=True, seed=5)
    on_device = DeviceBatches(images, masks, 4, drop_remainder=True, seed=5)
    pipeline = device_batches(images, masks, 4, drop_remainder=True, seed=5)

    for _ in range(2):
        assert len(on_device) == len(host) == 2
        for (x, y), (hx, hy) in zip(all_batches(on_device), all_batches(host), strict=True):
            np.testing.assert_array_equal(keras.ops.convert_to_numpy(x), hx)
            np.testing.assert_array_equal(keras.ops.convert_to_numpy(y), hy)
        on_device.on_epoch_end()
        host.on_epoch_end()
    epochs = []
    for _ in range(2):
        epochs.append([(np.asarray(x), np.asarray(y)) for x, y in pipeline])
        if hasattr(pipeline, "on_epoch_end"):  # a DeviceBatches (JAX): Keras calls this between epochs
            pipeline.on_epoch_end()
    for batches in epochs:
        assert [x.shape for x, _ in batches] == [(4, 16, 16, 1)] * 2
        for x, y in batches:
            np.testing.assert_array_equal(y, x > 0.5)
            assert all(any(np.array_equal(sample, image) for image in images) for sample in x)
    assert not np.array_equal(epochs[0][0][0], epochs[1][0][0])

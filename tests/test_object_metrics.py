"""Bead-level metrics: hand-made masks with known answers, the fast overlap count against a per-bead loop,
and `optimize evaluate` end to end."""

from __future__ import annotations

import csv
import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image
from scipy import ndimage
from scipy.optimize import linear_sum_assignment

from data import DataError, bead_labels, evaluate_objects, format_object_table, load_mask_pairs
from data._objects import image_scores, pair_ious
from tests.conftest import run_cli


def beads(shape: tuple[int, int], *boxes: tuple[int, int, int, int]) -> np.ndarray:
    """A label image with bead k + 1 filling boxes[k] = (top, bottom, left, right), bottom and right excluded."""
    labels = np.zeros(shape, np.uint16)
    for label, (top, bottom, left, right) in enumerate(boxes, start=1):
        labels[top:bottom, left:right] = label
    return labels


def scores(true_mask: np.ndarray, pred_mask: np.ndarray, threshold: float = 0.5):
    return image_scores(true_mask, pred_mask, (threshold,))[0]


TOUCHING = beads((12, 16), (2, 6, 2, 6), (2, 6, 6, 12))
"""Two beads in contact: 16 px and 24 px, sharing an edge."""


def test_touching_beads_stay_two_in_a_label_mask_and_are_one_in_a_binary_mask():
    assert bead_labels(TOUCHING).max() == 2
    assert bead_labels(TOUCHING > 0).max() == 1
    assert bead_labels((TOUCHING > 0).astype(np.uint8) * 255).max() == 1


def test_label_truth_against_a_binary_prediction_of_touching_beads():
    """The merged prediction (40 px) covers 24/40 of the larger bead and 16/40 of the smaller one."""
    score = scores(TOUCHING, (TOUCHING > 0).astype(np.float32))
    assert (score.n_true, score.n_pred, score.true_positives) == (2, 1, 1)
    assert (score.false_positives, score.false_negatives) == (0, 1)
    assert score.matched_iou == pytest.approx(0.6)
    assert score.panoptic_quality == pytest.approx(0.6 / 1.5)
    assert score.count_error == pytest.approx(0.5)


def test_binary_truth_against_a_label_prediction_of_touching_beads():
    score = scores(TOUCHING > 0, TOUCHING)
    assert (score.n_true, score.n_pred, score.true_positives) == (1, 2, 1)
    assert (score.false_positives, score.false_negatives) == (1, 0)
    assert score.object_precision == 0.5 and score.object_recall == 1.0
    assert score.count_error == 1.0


def test_a_missed_bead():
    truth = beads((16, 16), (1, 4, 1, 4), (6, 9, 6, 9), (11, 15, 11, 15))
    prediction = beads((16, 16), (1, 4, 1, 4), (6, 9, 6, 9))
    score = scores(truth, prediction)
    assert (score.true_positives, score.false_positives, score.false_negatives) == (2, 0, 1)
    assert score.object_precision == 1.0
    assert score.object_recall == pytest.approx(2 / 3)
    assert score.object_f1 == pytest.approx(0.8)
    assert score.object_ap == pytest.approx(2 / 3)
    assert score.matched_iou == 1.0
    assert score.panoptic_quality == pytest.approx(2 / 2.5)
    assert score.count_error == pytest.approx(1 / 3)


def test_a_split_bead_is_two_false_positives_and_a_false_negative():
    """Two halves of 24 px with a one-pixel gap between them: IoU 24/54 < 0.5 each."""
    truth = beads((10, 12), (2, 8, 1, 10))
    halves = beads((10, 12), (2, 8, 1, 5), (2, 8, 6, 10))
    for prediction in (halves, halves > 0):
        score = scores(truth, prediction)
        assert (score.n_pred, score.true_positives, score.false_positives, score.false_negatives) == (2, 0, 2, 1)
        assert score.object_f1 == 0.0 and score.object_ap == 0.0 and score.panoptic_quality == 0.0
        assert math.isnan(score.matched_iou)
        assert score.count_error == 1.0


def test_an_empty_prediction_finds_nothing():
    truth = beads((10, 10), (1, 4, 1, 4), (6, 9, 6, 9))
    score = scores(truth, np.zeros((10, 10)))
    assert (score.n_pred, score.true_positives, score.false_negatives) == (0, 0, 2)
    assert math.isnan(score.object_precision)
    assert score.object_recall == 0.0 and score.object_f1 == 0.0 and score.object_ap == 0.0
    assert score.panoptic_quality == 0.0 and score.count_error == 1.0


def test_an_image_without_beads():
    """Nothing to find: ratios are undefined (NaN); predicted beads are the count error, divided by 1."""
    empty = np.zeros((10, 10), np.uint8)
    nothing = scores(empty, empty)
    assert nothing.count_error == 0.0
    assert all(math.isnan(value) for value in (nothing.object_f1, nothing.object_ap, nothing.panoptic_quality))
    spurious = scores(empty, beads((10, 10), (1, 3, 1, 3), (5, 7, 5, 7)))
    assert (spurious.false_positives, spurious.object_precision, spurious.count_error) == (2, 0.0, 2.0)
    assert math.isnan(spurious.object_recall)


def test_overall_sums_beads_and_averages_count_errors_over_images():
    truth = [beads((10, 10), (1, 4, 1, 4), (6, 9, 6, 9)), np.zeros((10, 10))]
    prediction = [beads((10, 10), (1, 4, 1, 4)), beads((10, 10), (5, 8, 5, 8))]
    evaluation = evaluate_objects(truth, prediction, image_names=["a", "b"])
    overall = evaluation.overall(0.5)
    assert (overall.n_true, overall.n_pred, overall.true_positives) == (2, 2, 1)
    assert overall.count_error == pytest.approx((0.5 + 1.0) / 2)
    assert evaluation.summary() == {
        "object_f1": pytest.approx(0.5),
        "object_ap50": pytest.approx(1 / 3),
        "count_error": pytest.approx(0.75),
        "matched_iou": 1.0,
        "panoptic_quality": pytest.approx(0.5),
    }
    assert [row["image"] for row in evaluation.rows()] == ["a", "b"]


def test_the_stricter_threshold_drops_a_loose_match():
    """A 4x6 prediction of a 4x4 bead: IoU 16/24, a match at 0.5 but not at 0.75."""
    truth, prediction = beads((8, 10), (2, 6, 2, 6)), beads((8, 10), (2, 6, 2, 8))
    at_half, at_three_quarters = image_scores(truth, prediction, (0.5, 0.75))
    assert at_half.true_positives == 1 and at_half.matched_iou == pytest.approx(2 / 3)
    assert at_three_quarters.true_positives == 0 and at_three_quarters.false_positives == 1


def test_probabilities_are_thresholded_at_one_half():
    truth = beads((8, 8), (2, 6, 2, 6))
    probabilities = np.where(truth > 0, 0.7, 0.3).astype(np.float32)
    probabilities[0, 0] = 0.5
    score = scores(truth, probabilities)
    assert (score.n_pred, score.true_positives, score.matched_iou) == (1, 1, 1.0)


def test_thresholds_below_one_half_are_refused():
    with pytest.raises(ValueError, match=r"0\.5\.\.1, got 0\.3"):
        evaluate_objects([TOUCHING], [TOUCHING], (0.3,))


def test_table_shows_every_image_and_overall_with_undefined_values_as_dashes():
    table = format_object_table(evaluate_objects([TOUCHING, np.zeros((12, 16))], [TOUCHING, np.zeros((12, 16))]))
    lines = table.splitlines()
    assert lines[0].split(" | ")[0].strip() == "image" and "count error" in lines[0]
    assert [line.split(" | ")[0].strip() for line in lines[1:]] == ["0", "1", "overall"]
    assert lines[2].split(" | ")[-2].strip() == "-"


def random_labels(rng: np.random.Generator, size: int) -> np.ndarray:
    """Blobs of smoothed noise, each cut into touching beads by 6-pixel column bands."""
    blobs, _ = ndimage.label(ndimage.gaussian_filter(rng.normal(size=(size, size)), 2) > 0.1)
    bands = np.indices(blobs.shape)[1] // 6 % 2
    return np.where(blobs > 0, 2 * blobs + bands, 0)


def slow_scores(true_labels: np.ndarray, pred_labels: np.ndarray, threshold: float) -> tuple[int, float]:
    """Matches and their IoU sum, bead by bead, with an optimal assignment as StarDist and Cellpose match."""
    true_ids, pred_ids = np.unique(true_labels[true_labels > 0]), np.unique(pred_labels[pred_labels > 0])
    ious = np.zeros((true_ids.size, pred_ids.size))
    for i, true_id in enumerate(true_ids):
        for j, pred_id in enumerate(pred_ids):
            true_bead, pred_bead = true_labels == true_id, pred_labels == pred_id
            ious[i, j] = (true_bead & pred_bead).sum() / (true_bead | pred_bead).sum()
    rows, cols = linear_sum_assignment(-np.where(ious >= threshold, 1 + ious, 0))
    matched = ious[rows, cols][ious[rows, cols] >= threshold]
    return matched.size, float(matched.sum())


@pytest.mark.parametrize("seed", range(4))
def test_overlap_counting_matches_a_per_bead_loop(seed):
    rng = np.random.default_rng(seed)
    truth = random_labels(rng, 48)
    prediction = np.roll(truth, rng.integers(0, 3), axis=1) * (rng.uniform(size=truth.shape) > 0.03)
    prediction = np.where(rng.uniform(size=truth.shape) < 0.01, prediction.max() + 1, prediction)
    assert truth.max() > 10
    for threshold in (0.5, 0.75):
        score = scores(truth, prediction, threshold)
        true_positives, iou_sum = slow_scores(bead_labels(truth), bead_labels(prediction), threshold)
        assert score.true_positives == true_positives
        assert score.matched_iou_sum == pytest.approx(iou_sum)


def test_a_prediction_of_many_specks_is_counted_by_sorting_with_the_same_result():
    """A checkerboard of one-pixel beads: more label pairs than the dense count allows."""
    truth = bead_labels(beads((16, 16), *[(r, r + 3, c, c + 3) for r in (0, 8) for c in (0, 4, 8, 12)]))
    specks = np.arange(1, 257).reshape(16, 16) * (np.indices((16, 16)).sum(axis=0) % 2 == 0)
    specks = bead_labels(specks)
    n_true, n_pred = int(truth.max()), int(specks.max())
    assert (n_true + 1) * (n_pred + 1) > 4 * truth.size
    true_ids, pred_ids, ious = pair_ious(truth, specks, n_true, n_pred)
    slow = {
        (i, j): ((truth == i) & (specks == j)).sum() / ((truth == i) | (specks == j)).sum()
        for i in range(1, n_true + 1)
        for j in range(1, n_pred + 1)
        if ((truth == i) & (specks == j)).any()
    }
    assert dict(zip(zip(true_ids.tolist(), pred_ids.tolist(), strict=True), ious, strict=True)) == pytest.approx(slow)


def save(path: Path, pixels: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".tif":
        tifffile.imwrite(path, pixels)
    else:
        Image.fromarray(pixels).save(path)


@pytest.fixture
def folders(tmp_path) -> tuple[Path, Path]:
    """A data folder (a label TIFF and a binary PNG mask) and predictions (a binary PNG and a label TIFF)."""
    data, pred = tmp_path / "data", tmp_path / "pred"
    save(data / "masks" / "touching.tif", TOUCHING)
    save(data / "masks" / "missed.png", (beads((12, 16), (1, 4, 1, 4), (6, 9, 6, 9)) > 0).astype(np.uint8) * 255)
    save(pred / "touching.png", (TOUCHING > 0).astype(np.uint8) * 255)
    save(pred / "missed.tif", beads((12, 16), (1, 4, 1, 4)).astype(np.uint16))
    return data, pred


def test_mask_pairs_keep_labels(folders):
    names, truth, prediction = load_mask_pairs(*folders)
    assert names == ["missed", "touching"]
    np.testing.assert_array_equal(truth[1], TOUCHING)
    assert set(np.unique(prediction[1])) == {0, 1}


def test_evaluate_prints_the_table_and_writes_the_csv(folders, tmp_path):
    data, pred = folders
    table = tmp_path / "scores.csv"
    result = run_cli("evaluate", "--pred", str(pred), "--data", str(data), "--iou", "0.5", "0.75", "--csv", str(table))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "F1" in lines[0] and "count error" in lines[0]
    assert sum(line.startswith("overall") for line in lines) == 2
    with table.open(newline="") as file:
        rows = list(csv.DictReader(file))
    assert [(row["image"], float(row["iou_threshold"])) for row in rows] == [
        ("missed", 0.5),
        ("missed", 0.75),
        ("touching", 0.5),
        ("touching", 0.75),
    ]
    missed, touching = rows[0], rows[2]
    assert (missed["n_true"], missed["true_positives"], missed["false_negatives"]) == ("2", "1", "1")
    assert (touching["n_true"], touching["n_pred"], touching["true_positives"]) == ("2", "1", "1")
    assert float(touching["matched_iou"]) == pytest.approx(0.6)
    assert rows[3]["true_positives"] == "0"


def one_error_line(result) -> str:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_evaluate_refuses_a_csv_it_cannot_write_before_scoring(folders, tmp_path):
    """The table was computed and printed, then the command failed on the path (exit 2, one line after it)."""
    data, pred = folders
    for table, problem in (
        (tmp_path, "is a folder; expected a file name to write"),
        (tmp_path / "no" / "x.csv", "does not exist"),
    ):
        result = run_cli("evaluate", "--pred", str(pred), "--data", str(data), "--csv", str(table))
        assert (
            one_error_line(result).startswith(f"optimize evaluate: error: --csv {table}") and problem in result.stderr
        )
        assert result.returncode == 1 and result.stdout == ""


def test_evaluate_names_an_unpaired_prediction(folders):
    data, pred = folders
    save(pred / "stray.png", np.zeros((12, 16), np.uint8))
    line = one_error_line(run_cli("evaluate", "--pred", str(pred), "--data", str(data)))
    assert line.startswith("optimize evaluate: error: ") and "stray" in line and str(data / "masks") in line


def test_evaluate_names_both_files_of_different_sizes(folders):
    data, pred = folders
    save(pred / "missed.tif", np.zeros((12, 20), np.uint16))
    line = one_error_line(run_cli("evaluate", "--pred", str(pred), "--data", str(data)))
    assert str(pred / "missed.tif") in line and str(data / "masks" / "missed.png") in line and "20x12" in line


def test_evaluate_refuses_a_threshold_below_one_half(folders):
    data, pred = folders
    result = run_cli("evaluate", "--pred", str(pred), "--data", str(data), "--iou", "0.3")
    assert result.returncode == 2
    assert "--iou" in result.stderr and "0.5..1" in result.stderr


def test_evaluate_refuses_a_threshold_given_twice(folders):
    """`--iou 0.5 0.5` was scored once: the table and CSV had one threshold where two were asked for."""
    data, pred = folders
    result = run_cli("evaluate", "--pred", str(pred), "--data", str(data), "--iou", "0.5", "0.75", "0.50")
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "optimize evaluate: error: --iou 0.5 is given twice; give each threshold once"
    ]


def test_a_missing_prediction_folder_is_named(folders, tmp_path):
    with pytest.raises(DataError, match="prediction folder .*nowhere does not exist"):
        load_mask_pairs(folders[0], tmp_path / "nowhere")


def test_grey_pictures_given_as_predictions_are_warned_about_and_label_images_are_not(tmp_path):
    """`evaluate --pred DATA/images` (the images, not predictions) scored 1,793 'beads' at F1 0.002 without a word."""
    from data import write_microbeads

    data = write_microbeads(tmp_path / "data", 3, size=64, seed=1)
    with pytest.warns(UserWarning, match=r"3 label image\(s\) look like grey pictures, not beads"):
        load_mask_pairs(data, data / "images")

    labelled = tmp_path / "labels"
    labelled.mkdir()
    for mask in sorted((data / "masks").iterdir()):
        labels, _ = ndimage.label(np.asarray(Image.open(mask)) > 0)
        tifffile.imwrite(labelled / f"{mask.stem}.tif", labels.astype(np.uint16))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_mask_pairs(data, labelled)


def test_evaluate_needs_only_masks_and_names_a_masks_folder_given_as_data(folders):
    """evaluate reads only masks/: a data folder without images/ is scored; its masks/ folder given as
    --data was refused as lacking images/ and masks/ inside it."""
    data, pred = folders
    assert not (data / "images").exists()
    assert run_cli("evaluate", "--pred", str(pred), "--data", str(data)).returncode == 0
    line = one_error_line(run_cli("evaluate", "--pred", str(pred), "--data", str(data / "masks")))
    assert line == (
        f"optimize evaluate: error: {data / 'masks'} holds images but no masks/ folder; give the data folder "
        f"that holds masks/ ({data}?), not the masks folder itself"
    )
    line = one_error_line(run_cli("evaluate", "--pred", str(pred), "--data", str(pred.parent)))
    assert line.endswith(f"{pred.parent} has no masks/ folder; expected a data folder whose masks/ hold the true beads")

"""Bead-level (object) metrics: predicted beads matched one-to-one to true beads by their IoU.

Pixel scores (Jaccard, Dice) cannot tell two touching beads predicted as one, or one bead predicted as
two halves, from a good segmentation; counting beads can. A predicted bead matches a true bead when their
IoU reaches the threshold. From 0.5 up a bead can have at most one partner above the threshold (two
beads each covering more than half of a third cannot both exist), so the matching is unique and needs no
assignment solver; an exact IoU of 0.5 with two partners (a bead cut into two equal halves that tile it)
goes to the first. AP is TP / (TP + FP + FN) as StarDist and Cellpose define it, panoptic quality is
the sum of matched IoUs / (TP + FP/2 + FN/2) (Kirillov et al. 2019).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

FOREGROUND_THRESHOLD = 0.5
"""A pixel above this is foreground: a probability above one half, or any non-zero pixel of a binary mask."""
MIN_IOU_THRESHOLD = 0.5
"""Below an IoU of 0.5 a bead could match two others, and the one-to-one matching would need a solver."""
SUMMARY_IOU = 0.5
"""The IoU threshold of the stored metrics (`ObjectEvaluation.summary`)."""
_DENSE_PAIRS_PER_PIXEL = 4
"""Overlap tables up to this many entries per pixel are counted densely; a prediction of thousands of
specks is counted by sorting instead, so that memory stays proportional to the image."""


def connected_components(mask: np.ndarray) -> np.ndarray:
    """Labels 1..n of the connected foreground components (4-connectivity) of one (H, W) mask, 0 elsewhere."""
    return ndimage.label(np.asarray(mask) > FOREGROUND_THRESHOLD)[0]


def bead_labels(mask: np.ndarray) -> np.ndarray:
    """The beads of one (H, W) mask as consecutive labels 1..n, 0 for background.

    An integer label image (more than one distinct non-zero value, all whole numbers, as Cellpose and
    StarDist write them) keeps its beads, so touching beads stay two. Any other mask (binary, or
    probabilities) is thresholded at 0.5 and each connected component is a bead: two beads in contact
    in a binary mask are one.
    """
    mask = _two_dimensional(mask)
    foreground = mask != 0
    values, inverse = np.unique(mask[foreground], return_inverse=True)
    if values.size <= 1 or not np.array_equal(values, np.round(values)):
        return connected_components(mask)
    labels = np.zeros(mask.shape, np.int64)
    labels[foreground] = inverse.ravel() + 1
    return labels


@dataclass(frozen=True)
class ObjectScores:
    """Object counts and metrics of one image, or of a set of images, at one IoU threshold.

    A ratio with nothing to count (precision of an empty prediction, matched IoU without a match) is NaN.
    """

    iou_threshold: float
    n_true: int
    n_pred: int
    true_positives: int
    matched_iou_sum: float
    count_error: float
    """|predicted - true| / true beads; an image without true beads divides by 1 (its predicted beads are
    the error, 0 when it predicts none too). For a set of images: the mean over the images."""

    @property
    def false_positives(self) -> int:
        return self.n_pred - self.true_positives

    @property
    def false_negatives(self) -> int:
        return self.n_true - self.true_positives

    @property
    def object_precision(self) -> float:
        return _ratio(self.true_positives, self.n_pred)

    @property
    def object_recall(self) -> float:
        return _ratio(self.true_positives, self.n_true)

    @property
    def object_f1(self) -> float:
        return _ratio(2 * self.true_positives, self.n_true + self.n_pred)

    @property
    def object_ap(self) -> float:
        return _ratio(self.true_positives, self.n_true + self.n_pred - self.true_positives)

    @property
    def matched_iou(self) -> float:
        return _ratio(self.matched_iou_sum, self.true_positives)

    @property
    def panoptic_quality(self) -> float:
        return _ratio(self.matched_iou_sum, (self.n_true + self.n_pred) / 2)

    def as_row(self) -> dict[str, float]:
        """Every count and metric by name, as the CSV columns."""
        return {
            "iou_threshold": self.iou_threshold,
            "n_true": self.n_true,
            "n_pred": self.n_pred,
            "true_positives": self.true_positives,
            "false_positives": self.false_positives,
            "false_negatives": self.false_negatives,
            "object_precision": self.object_precision,
            "object_recall": self.object_recall,
            "object_f1": self.object_f1,
            "object_ap": self.object_ap,
            "matched_iou": self.matched_iou,
            "panoptic_quality": self.panoptic_quality,
            "count_error": self.count_error,
        }


@dataclass(frozen=True)
class ObjectEvaluation:
    """Object scores of each image (in image order) at each IoU threshold, and over all images."""

    image_names: tuple[str, ...]
    iou_thresholds: tuple[float, ...]
    per_image: tuple[tuple[ObjectScores, ...], ...]
    """per_image[i][k]: image i at iou_thresholds[k]."""

    def overall(self, iou_threshold: float) -> ObjectScores:
        """All images together: beads and matches summed (as StarDist's dataset scores), count error averaged."""
        scores = [image[self.iou_thresholds.index(iou_threshold)] for image in self.per_image]
        return ObjectScores(
            iou_threshold=iou_threshold,
            n_true=sum(score.n_true for score in scores),
            n_pred=sum(score.n_pred for score in scores),
            true_positives=sum(score.true_positives for score in scores),
            matched_iou_sum=math.fsum(score.matched_iou_sum for score in scores),
            count_error=float(np.mean([score.count_error for score in scores])),
        )

    def summary(self) -> dict[str, float]:
        """The overall metrics at IoU 0.5 under the names they are stored with (after a `val_` prefix)."""
        overall = self.overall(SUMMARY_IOU)
        return {
            "object_f1": overall.object_f1,
            "object_ap50": overall.object_ap,
            "count_error": overall.count_error,
            "matched_iou": overall.matched_iou,
            "panoptic_quality": overall.panoptic_quality,
        }

    def rows(self) -> list[dict[str, object]]:
        """One row per image and threshold: the image's name, then `ObjectScores.as_row`."""
        return [
            {"image": name, **score.as_row()}
            for name, scores in zip(self.image_names, self.per_image, strict=True)
            for score in scores
        ]


def evaluate_objects(
    true_masks: Sequence[np.ndarray] | np.ndarray,
    pred_masks: Sequence[np.ndarray] | np.ndarray,
    iou_thresholds: Sequence[float] = (SUMMARY_IOU,),
    image_names: Sequence[str] | None = None,
) -> ObjectEvaluation:
    """Object scores of predicted masks against true masks, pair by pair, at each IoU threshold.

    Masks are (H, W) or (H, W, 1) each, or stacks of them; each mask may be a label image, a binary
    mask or probabilities (see `bead_labels`). `summary` needs the threshold 0.5 among `iou_thresholds`.
    Images are named by their index unless `image_names` is given.
    """
    thresholds = tuple(dict.fromkeys(float(threshold) for threshold in iou_thresholds))
    if not thresholds:
        raise ValueError("give at least one IoU threshold")
    for threshold in thresholds:
        if not MIN_IOU_THRESHOLD <= threshold <= 1:
            raise ValueError(f"IoU thresholds must be in {MIN_IOU_THRESHOLD}..1, got {threshold}")
    if len(true_masks) != len(pred_masks):
        raise ValueError(f"{len(true_masks)} true masks but {len(pred_masks)} predicted masks")
    names = tuple(image_names) if image_names is not None else tuple(str(i) for i in range(len(true_masks)))
    pairs = zip(true_masks, pred_masks, strict=True)
    per_image = tuple(image_scores(true_mask, pred_mask, thresholds) for true_mask, pred_mask in pairs)
    return ObjectEvaluation(names, thresholds, per_image)


def image_scores(
    true_mask: np.ndarray, pred_mask: np.ndarray, iou_thresholds: Sequence[float]
) -> tuple[ObjectScores, ...]:
    """Object scores of one predicted mask against its true mask, at each threshold (each at least 0.5)."""
    true_labels, pred_labels = bead_labels(true_mask), bead_labels(pred_mask)
    if true_labels.shape != pred_labels.shape:
        raise ValueError(f"true mask is {true_labels.shape} but predicted mask is {pred_labels.shape}")
    n_true, n_pred = int(true_labels.max(initial=0)), int(pred_labels.max(initial=0))
    true_ids, pred_ids, ious = pair_ious(true_labels, pred_labels, n_true, n_pred)
    count_error = abs(n_pred - n_true) / max(n_true, 1)
    scores = []
    for threshold in iou_thresholds:
        matched = _one_to_one(true_ids, pred_ids, ious, threshold)
        scores.append(ObjectScores(threshold, n_true, n_pred, int(matched.size), math.fsum(matched), count_error))
    return tuple(scores)


def pair_ious(
    true_labels: np.ndarray, pred_labels: np.ndarray, n_true: int, n_pred: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every overlapping (true bead, predicted bead) pair of two label images (labels 0..n, 0 background):
    their labels and IoU. Overlaps are counted for all pairs at once from one histogram of label pairs."""
    pairs = true_labels.ravel().astype(np.int64) * (n_pred + 1) + pred_labels.ravel()
    if (n_true + 1) * (n_pred + 1) <= _DENSE_PAIRS_PER_PIXEL * pairs.size:
        counts = np.bincount(pairs)
        keys = np.flatnonzero(counts)
        counts = counts[keys]
    else:
        keys, counts = np.unique(pairs, return_counts=True)
    true_ids, pred_ids = np.divmod(keys, n_pred + 1)
    both = (true_ids > 0) & (pred_ids > 0)
    true_ids, pred_ids, overlap = true_ids[both], pred_ids[both], counts[both]
    true_area = np.bincount(true_labels.ravel(), minlength=n_true + 1)
    pred_area = np.bincount(pred_labels.ravel(), minlength=n_pred + 1)
    return true_ids, pred_ids, overlap / (true_area[true_ids] + pred_area[pred_ids] - overlap)


def _one_to_one(true_ids: np.ndarray, pred_ids: np.ndarray, ious: np.ndarray, threshold: float) -> np.ndarray:
    """IoUs of the matched pairs: pairs at or above `threshold`, each bead kept in its highest-IoU pair."""
    keep = ious >= threshold
    order = np.argsort(-ious[keep], kind="stable")
    true_ids, pred_ids, ious = true_ids[keep][order], pred_ids[keep][order], ious[keep][order]
    first_of_true = np.unique(true_ids, return_index=True)[1]
    kept = np.sort(first_of_true)
    first_of_pred = np.unique(pred_ids[kept], return_index=True)[1]
    return ious[kept[first_of_pred]]


def format_object_table(evaluation: ObjectEvaluation) -> str:
    """The scores of every image and overall at each threshold, as a plain-text table (NaN shown as '-')."""
    headers = ["image", "IoU >=", "true", "pred", "TP", "FP", "FN", "precision", "recall", "F1", "AP"]
    headers += ["matched IoU", "PQ", "count error"]
    rows = [
        _table_row(name, scores[k])
        for k in range(len(evaluation.iou_thresholds))
        for name, scores in zip(evaluation.image_names, evaluation.per_image, strict=True)
    ]
    rows += [_table_row("overall", evaluation.overall(threshold)) for threshold in evaluation.iou_thresholds]
    widths = [max(len(row[i]) for row in [headers, *rows]) for i in range(len(headers))]
    aligned = [
        [cell.rjust(width) if i else cell.ljust(width) for i, (cell, width) in enumerate(zip(row, widths, strict=True))]
        for row in [headers, *rows]
    ]
    return "\n".join(" | ".join(cells) for cells in aligned)


def _table_row(name: str, score: ObjectScores) -> list[str]:
    counts = [score.n_true, score.n_pred, score.true_positives, score.false_positives, score.false_negatives]
    metrics = [score.object_precision, score.object_recall, score.object_f1, score.object_ap, score.matched_iou]
    metrics += [score.panoptic_quality, score.count_error]
    shown = ["-" if math.isnan(metric) else f"{metric:.3f}" for metric in metrics]
    return [name, f"{score.iou_threshold:g}", *map(str, counts), *shown]


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else math.nan


def _two_dimensional(mask: np.ndarray) -> np.ndarray:
    """One mask as (H, W), accepting a trailing channel axis of size 1."""
    mask = np.asarray(mask)
    if mask.ndim == 3 and mask.shape[-1] == 1:
        mask = mask[..., 0]
    if mask.ndim != 2:
        raise ValueError(f"a mask must be shaped (H, W) or (H, W, 1), got {mask.shape}")
    return mask

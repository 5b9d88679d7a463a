"""Beads of a predicted probability map: the binary mask, the label image and each bead's area and centre.

A pixel is bead when its probability is above the threshold (0.5 by default, as `optimize evaluate` reads
probabilities); each 4-connected component of bead pixels is one bead, as `data.connected_components`
labels them, so touching beads predicted as one blob count as one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from data._objects import connected_components


@dataclass(frozen=True)
class Beads:
    """The beads of one image."""

    mask: np.ndarray
    """(H, W) bool: bead pixels."""
    labels: np.ndarray
    """(H, W) int64: beads as labels 1..n, 0 for background."""
    areas: np.ndarray
    """(n,) pixels per bead, in label order."""
    centroids: np.ndarray
    """(n, 2) (row, column) centre of each bead, in label order."""

    @property
    def count(self) -> int:
        return len(self.areas)

    def summary(self, image: str) -> dict[str, object]:
        """One row of `beads.csv`: size, count, foreground fraction and bead areas (empty without beads)."""
        height, width = self.mask.shape
        return {
            "image": image,
            "width": width,
            "height": height,
            "bead_count": self.count,
            "foreground_fraction": round(float(self.mask.mean()), 6),
            "mean_bead_area_px": round(float(self.areas.mean()), 3) if self.count else "",
            "median_bead_area_px": round(float(np.median(self.areas)), 3) if self.count else "",
        }

    def rows(self, image: str) -> list[dict[str, object]]:
        """Rows of `bead_areas.csv`: one per bead, numbered as in the label image."""
        return [
            {
                "image": image,
                "bead": number,
                "area_px": int(area),
                "centroid_y": round(float(row), 3),
                "centroid_x": round(float(col), 3),
            }
            for number, (area, (row, col)) in enumerate(zip(self.areas, self.centroids, strict=True), start=1)
        ]


def find_beads(probabilities: np.ndarray, threshold: float = 0.5) -> Beads:
    """The beads of one (H, W) probability map: pixels above `threshold`, 4-connected components."""
    mask = np.asarray(probabilities) > threshold
    labels = connected_components(mask)
    count = int(labels.max())
    index = np.arange(1, count + 1)
    areas = ndimage.sum_labels(np.ones(mask.shape), labels, index).astype(np.int64)
    centroids = np.array(ndimage.center_of_mass(mask, labels, index), dtype=np.float64).reshape(count, 2)
    return Beads(mask=mask, labels=labels, areas=areas, centroids=centroids)

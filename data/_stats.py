"""Connected-component statistics of mask sets: what the search reports and the split stratifies on."""

from __future__ import annotations

import numpy as np

from data._errors import DataError
from data._objects import connected_components


def objects_per_image(masks: np.ndarray) -> np.ndarray:
    """Number of connected foreground components (4-connectivity) in each mask."""
    return np.array([len(areas) for areas in _object_areas(_as_stack(masks))])


def dataset_stats(masks: np.ndarray) -> dict[str, float]:
    """Objects per image, foreground fraction and object areas (px) of masks shaped (N, H, W[, 1]).

    Object areas are 0.0 when no mask has any foreground.
    """
    stack = _as_stack(masks)
    areas_per_image = _object_areas(stack)
    counts = np.array([len(areas) for areas in areas_per_image])
    areas = np.concatenate(areas_per_image)
    n_images, height, width = stack.shape
    return {
        "n_images": float(n_images),
        "image_height": float(height),
        "image_width": float(width),
        "objects_per_image_mean": float(counts.mean()),
        "objects_per_image_median": float(np.median(counts)),
        "objects_per_image_min": float(counts.min()),
        "objects_per_image_max": float(counts.max()),
        "foreground_fraction": float((stack > 0.5).mean()),
        "object_area_mean": float(areas.mean()) if areas.size else 0.0,
        "object_area_median": float(np.median(areas)) if areas.size else 0.0,
    }


def format_stats_table(stats: dict[str, float]) -> str:
    """`dataset_stats` as a plain-text two-column table, with the rows of the users' data report.

    Their "positive pixel ratio" is called the foreground fraction here, as everywhere else in the project.
    """
    rows = [
        ("Images", f"{stats['n_images']:.0f}"),
        ("Image size", f"{stats['image_width']:.0f} x {stats['image_height']:.0f} px"),
        (
            "Objects per image",
            f"{stats['objects_per_image_mean']:.1f} ({stats['objects_per_image_min']:.0f} to "
            f"{stats['objects_per_image_max']:.0f}), median {stats['objects_per_image_median']:.0f}",
        ),
        ("Foreground fraction", f"{100 * stats['foreground_fraction']:.1f} %"),
        ("Object size", f"~{stats['object_area_mean']:.0f} px (median {stats['object_area_median']:.0f} px)"),
    ]
    width = max(len(label) for label, _ in rows)
    return "\n".join(f"{label:<{width}} | {value}" for label, value in rows)


def _object_areas(stack: np.ndarray) -> list[np.ndarray]:
    """Pixel areas of the connected foreground components of each (H, W) mask."""
    areas = []
    for mask in stack:
        areas.append(np.bincount(connected_components(mask).ravel())[1:])
    return areas


def _as_stack(masks: np.ndarray) -> np.ndarray:
    """Masks as (N, H, W), accepting a trailing channel axis of size 1."""
    masks = np.asarray(masks)
    if masks.ndim == 4 and masks.shape[-1] == 1:
        masks = masks[..., 0]
    if masks.ndim != 3 or masks.shape[0] == 0:
        raise DataError(f"masks must be shaped (N, H, W) or (N, H, W, 1) with N >= 1, got {masks.shape}")
    return masks

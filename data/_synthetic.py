"""Synthetic microscope images of microbeads that look, statistically, like the users' data.

The users' 512x512 images hold ~109 beads each (12 to 254), ~11.5 % foreground and beads of
~276 px (~69 px at 256x256). Bead counts per image stay the same at every `size`; bead radius
scales with `size / 256`, so a 256x256 set is the users' data downsampled by two.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage, spatial, special

from data._errors import DataError
from data._loader import IMAGE_EXTENSIONS

# Measured objects average ~69 px at 256x256 with this radius (touching pairs make objects larger).
_RADIUS_AT_256 = 4.63
_RADIUS_JITTER = 0.08
_COUNT_SIGMA = 0.6
_PAIR_FRACTION = 0.1
_DIM_FRACTION = 0.2
_SEPARATION_PX = 1.5


def make_microbeads(
    n_images: int,
    size: int = 256,
    seed: int = 0,
    *,
    mean_beads: float = 109.0,
    min_beads: int = 12,
    max_beads: int = 254,
    radius: float | None = None,
    noise: float = 0.04,
) -> tuple[np.ndarray, np.ndarray]:
    """Images and binary masks shaped like `load_dataset`'s output: float32, (n_images, size, size, 1).

    Bead objects per image follow a lognormal with mean `mean_beads`, clipped to
    [`min_beads`, `max_beads`]; about one object in ten is a touching pair, which counts once, as
    connected components do. `radius` is the bead radius in px (default 4.63 * size / 256, which
    measures ~69 px objects at 256x256). Images have an uneven background, blur, gaussian noise of
    standard deviation `noise`, and some dim beads. At 128 px and below the most crowded images
    may hold fewer objects than drawn, for lack of room. Deterministic for a seed.
    """
    if n_images < 1 or size < 8:
        raise ValueError(f"need n_images >= 1 and size >= 8, got n_images={n_images}, size={size}")
    rng = np.random.default_rng(seed)
    scale = size / 256
    radius = _RADIUS_AT_256 * scale if radius is None else radius
    counts = _object_counts(rng, n_images, mean_beads, min_beads, max_beads)
    images = np.empty((n_images, size, size, 1), np.float32)
    masks = np.empty((n_images, size, size, 1), np.float32)
    for i, count in enumerate(counts):
        centres, radii = _place_beads(rng, count, size, radius)
        mask, signal = _render_beads(rng, centres, radii, size)
        image = ndimage.gaussian_filter(_background(rng, size) + signal, sigma=max(scale, 0.5))
        image += rng.normal(0.0, noise, image.shape)
        images[i, ..., 0] = np.clip(image, 0.0, 1.0)
        masks[i, ..., 0] = mask
    return images, masks


def write_microbeads(out_dir: str | Path, n_images: int, size: int = 256, seed: int = 0) -> Path:
    """Write `make_microbeads` output as `out_dir/images/bead_0000.png` (8-bit grey) and `masks/` (0/255).

    Raises DataError, before writing anything, when `images/` or `masks/` already hold image files: the
    new files would overwrite some of them and mix with the others into a data set of two origins.
    """
    out_dir = Path(out_dir)
    for folder in (out_dir / "images", out_dir / "masks"):
        held = _image_files_in(folder)
        if held:
            raise DataError(
                f"{folder} already holds {held} image file(s); give a new or empty folder "
                "(make-data writes bead_0000.png, bead_0001.png, ... there)"
            )
    images, masks = make_microbeads(n_images, size, seed)
    for folder in ("images", "masks"):
        (out_dir / folder).mkdir(parents=True, exist_ok=True)
    for i, (image, mask) in enumerate(zip(images, masks, strict=True)):
        name = f"bead_{i:04d}.png"
        Image.fromarray(np.round(image[..., 0] * 255).astype(np.uint8)).save(out_dir / "images" / name)
        Image.fromarray((mask[..., 0] * 255).astype(np.uint8)).save(out_dir / "masks" / name)
    return out_dir


def _image_files_in(folder: Path) -> int:
    """How many non-hidden files with an image extension `folder` holds (0 when it does not exist)."""
    if not folder.is_dir():
        return 0
    return sum(
        1 for path in folder.iterdir() if path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")
    )


def _object_counts(rng: np.random.Generator, n_images: int, mean: float, low: int, high: int) -> np.ndarray:
    """Objects per image: stratified lognormal quantiles, so even a few images have the users' spread."""
    quantiles = (rng.permutation(n_images) + rng.uniform(size=n_images)) / n_images
    mu = np.log(mean) - _COUNT_SIGMA**2 / 2
    counts = np.exp(mu + _COUNT_SIGMA * special.ndtri(quantiles))
    return np.clip(np.round(counts), low, high).astype(int)


def _place_beads(rng: np.random.Generator, n_objects: int, size: int, radius: float) -> tuple[np.ndarray, np.ndarray]:
    """Centres (y, x) and radii of `n_objects` separate objects, some of them touching pairs.

    Objects are dart-thrown so that they never merge; a pair's second bead lies within the
    parent's exclusion disc and overlaps the parent.
    """
    n_candidates = 6 * n_objects + 20  # enough darts to fill the most crowded images
    radii = radius * (1 + _RADIUS_JITTER * rng.standard_normal((n_candidates, 2))).clip(0.5, 1.5)
    is_pair = rng.uniform(size=n_candidates) < _PAIR_FRACTION
    pair_distance = rng.uniform(0.6, 0.9, n_candidates) * radii.sum(axis=1)
    reach = np.where(is_pair, pair_distance + radii[:, 1], radii[:, 0])
    centres = rng.uniform(-0.5, size - 0.5, (n_candidates, 2))
    pairs = spatial.cKDTree(centres).query_pairs(2 * reach.max() + _SEPARATION_PX, output_type="ndarray")
    gaps = np.linalg.norm(centres[pairs[:, 0]] - centres[pairs[:, 1]], axis=1) - reach[pairs].sum(axis=1)
    accepted = _first_fit(n_candidates, pairs[gaps < _SEPARATION_PX])[:n_objects]
    parents = accepted[is_pair[accepted]]
    angle = rng.uniform(0, 2 * np.pi, len(parents))
    offsets = pair_distance[parents, None] * np.stack([np.sin(angle), np.cos(angle)], axis=1)
    all_centres = np.concatenate([centres[accepted], centres[parents] + offsets])
    all_radii = np.concatenate([radii[accepted, 0], radii[parents, 1]])
    return all_centres, all_radii


def _first_fit(n_candidates: int, conflicts: np.ndarray) -> np.ndarray:
    """Indices that sequential dart throwing keeps: each candidate in turn, unless it conflicts with one kept.

    Computed in parallel rounds: a candidate with no undecided lower-index conflict is decided.
    """
    low, high = np.sort(conflicts, axis=1).T
    kept = np.zeros(n_candidates, bool)
    undecided = np.ones(n_candidates, bool)
    while undecided.any():
        waiting = np.zeros(n_candidates, bool)
        waiting[high[undecided[low] & undecided[high]]] = True
        kept |= undecided & ~waiting
        undecided &= ~kept
        undecided[high[kept[low]]] = False
        undecided[low[kept[high]]] = False
    return np.flatnonzero(kept)


def _render_beads(
    rng: np.random.Generator, centres: np.ndarray, radii: np.ndarray, size: int
) -> tuple[np.ndarray, np.ndarray]:
    """Binary mask of the discs and their brightness: a dome profile, some beads dim."""
    half = int(np.ceil(radii.max(initial=0))) + 1
    offsets = np.arange(-half, half + 1)
    rows = np.round(centres[:, 0])[:, None, None].astype(int) + offsets[None, :, None]
    cols = np.round(centres[:, 1])[:, None, None].astype(int) + offsets[None, None, :]
    dy, dx = rows - centres[:, 0, None, None], cols - centres[:, 1, None, None]
    squared = (dy**2 + dx**2) / radii[:, None, None] ** 2
    rows, cols = np.broadcast_arrays(rows, cols)
    inside = (squared <= 1) & (rows >= 0) & (rows < size) & (cols >= 0) & (cols < size)
    dim = rng.uniform(size=len(radii)) < _DIM_FRACTION
    amplitude = np.where(dim, rng.uniform(0.08, 0.18, len(radii)), rng.uniform(0.22, 0.45, len(radii)))
    brightness = amplitude[:, None, None] * (0.7 + 0.3 * np.sqrt(np.clip(1 - squared, 0, 1)))
    mask = np.zeros((size, size), np.float32)
    signal = np.zeros((size, size), np.float64)
    mask[rows[inside], cols[inside]] = 1.0
    np.maximum.at(signal, (rows[inside], cols[inside]), brightness[inside])
    return mask, signal


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """Uneven illumination: a base level plus smooth shading along rows, along columns and their product."""
    position = np.linspace(0.0, 1.0, size)
    cycles = rng.uniform(0.2, 1.5, (4, 2, 1))
    phase = rng.uniform(0, 2 * np.pi, (4, 2, 1))
    rows, cols, row_factor, col_factor = np.sin(2 * np.pi * cycles * position + phase).sum(axis=1)
    shading = rows[:, None] + cols[None, :] + 0.4 * row_factor[:, None] * col_factor[None, :]
    return rng.uniform(0.15, 0.35) + 0.04 * shading

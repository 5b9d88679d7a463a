"""A study planned from its data (`optimize new-study NAME --data DIR`), in the spirit of nnU-Net's plans.

The data set is fingerprinted (the statistics of `optimize data-stats`, plus the spread of objects per image
and whether the masks are label images) and a few small rules turn that fingerprint, the device and the
Keras backend into the settings of a study file. Each rule returns its settings with the reason, and the
reason is printed in the plan's table and written as a comment above those settings in `studies/NAME.toml`.

Every number a rule uses is a named constant below with where it comes from: the users' reports (the
comparison of sparse mitochondria with dense microbeads, their 512² search and its follow-up) and the
project's own measurements in `bench/RESULTS.md`. No Keras here: planning runs on a login node.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import textwrap
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from models import ARCHITECTURES
from optimize.errors import UserError
from optimize.keras_import import keras_backend
from optimize.search.config import PrunerConfig, parse_config

# --- The users' sparse/dense comparison (mitochondria vs microbeads) --------------------------------------------
SPARSE_OBJECTS_PER_IMAGE = 3.0
"""Mitochondria: 2-3 objects per image; the users' 36.5x density ratio is 109.4 / 3."""
SPARSE_LEARNING_RATE = 1e-3
"""The U-Net's learning rate on the sparse mitochondria."""
DENSE_OBJECTS_PER_IMAGE = 109.4
"""Microbeads at 512²: 109.4 objects per image (12 to 254)."""
DENSE_LEARNING_RATE = 1e-4
"""The rate that stopped the validation collapse on the dense beads: 36.5x the objects needed a 10x smaller rate."""
LR_DENSITY_EXPONENT = math.log(SPARSE_LEARNING_RATE / DENSE_LEARNING_RATE) / math.log(
    DENSE_OBJECTS_PER_IMAGE / SPARSE_OBJECTS_PER_IMAGE
)
"""Centre rate = 1e-3 x (3 / objects per image)^0.64: through both of the users' points, a power law between."""
LR_CENTRE_LIMITS = (1e-5, SPARSE_LEARNING_RATE)
"""The centre is kept within rates the users trained (5e-5 to 1e-3), with a decade of margin below."""
LR_BELOW, LR_ABOVE = 10.0, 5.0
"""The range searched around the centre: 1e-4 gives 1e-5..5e-4, studies/microbead512.toml's range, which holds
every rate of the users' 512² searches (5e-5, 1e-4, 2e-4)."""
DENSE_FROM_OBJECTS = math.sqrt(SPARSE_OBJECTS_PER_IMAGE * DENSE_OBJECTS_PER_IMAGE)
"""~18 objects per image: halfway (on a log scale) between the users' sparse and dense sets."""
SPARSE_MAX_BATCH, DENSE_MAX_BATCH = 16, 32
"""Sparse objects trained with batches of 8-16; the dense beads with 32 ("larger batches stabilise dense gradients")."""
BATCH_SIZES = (4, 8, 16, 32)
"""The batch sizes of the users' searches (4, 8, 16 at 512², then 8, 16, 32)."""
SPARSE_DROPOUT = (0.0, 0.1, 0.2)
DENSE_DROPOUT = (0.0, 0.1, 0.2, 0.3)
"""Uniform beads overfit ("draw circles"): 0.3 in all their good configurations; the mitochondria trained with 0.0."""
SPREAD_CV = 0.3
"""Objects per image vary when their coefficient of variation is above this (the users' beads: 12 to 254)."""
SMALL_VAL_FRACTION, LARGE_VAL_FRACTION, LARGE_SET_IMAGES = 0.15, 0.10, 100
"""15 % validation for their 73 images, 10 % for the 134 mitochondria images."""
STRATA = 5
"""Quantile bins of objects per image of `data.stratified_split` (the users' `pd.qcut(q=5)`)."""
MAX_VAL_FRACTION = 0.3
"""A validation share that stratification may raise the split to, no more."""
SMALL_OBJECT_FRACTION = 0.01
"""An object is small under 1 % of the image: the users' beads are ~276 px of 512², 0.1 %."""
RARE_FOREGROUND = 0.02
"""Foreground under 2 %: "focal loss is designed for extreme class imbalance (e.g. 1 % positive)"."""

# --- The users' 512² search and its follow-up --------------------------------------------------------------------
GPU_MAX_EPOCHS = 100
"""Their epochs per configuration."""
PATIENCE_FRACTION = 0.3
"""Early-stopping patience 30 of 100 epochs: raised from 20 because their best model peaked at epoch 52."""
ASHA_FIRST_RUNG_FRACTION = 0.25
ASHA_REDUCTION_FACTOR = 2
"""Rungs at 25, 50 and 100 % of the epochs, keeping the top half: replayed on the users' 96-configuration grid
(`bench/replay.py`), they reach the grid's best within a third of its epochs in every replay; first rungs at
10-20 % of the epochs or a reduction factor of 3 prune its slow-starting best configuration."""
ASHA_MIN_FIRST_RUNG = 2
"""One epoch says little: the users' val Jaccard peaked at epoch 1 (0.14), then collapsed."""
KNOWN_GOOD: tuple[tuple[str, dict[str, Any]], ...] = (
    (
        "their best at 512x512: val Jaccard 0.164",
        {"architecture": "unet", "learning_rate": 2e-4, "batch_size": 4, "dropout": 0.3, "loss": "combined"},
    ),
    (
        "their predicted best",
        {
            "architecture": "attention_resunet",
            "learning_rate": 5e-5,
            "batch_size": 16,
            "dropout": 0.3,
            "loss": "focal_tversky",
        },
    ),
    (
        "their best at 256x256: val Jaccard 0.2456",
        {"architecture": "unet", "learning_rate": 1e-4, "batch_size": 32, "dropout": 0.3, "loss": "dice"},
    ),
)
"""The users' known configurations, as studies/microbead512.toml enqueues them."""
DENSE_SMALL_LOSSES = ("dice", "focal", "tversky", "focal_tversky", "combined", "combined_tversky")
"""At 512² combined won (0.164), focal was steadiest (0.123 mean), dice worst (0.080) but their 256² best; their
follow-up added the Tversky family for the false-positive/false-negative balance of touching beads."""
SPARSE_LOSSES = ("dice", "focal", "combined")
"""Dice optimizes overlap directly; the mitochondria trained with focal (gamma 2); combined is 0.7 dice + 0.3 focal."""

# --- bench/RESULTS.md --------------------------------------------------------------------------------------------
GPU_BASE_FILTERS, GPU_MAX_DEPTH = 64, 4
"""The users' U-Net: 4 encoder blocks, 64 filters first (31.4M parameters); measured on an H100."""
CPU_BASE_FILTERS, CPU_MAX_DEPTH = 8, 3
"""studies/demo.toml's small models, which train in minutes on 2 cores."""
MIN_BOTTLENECK_PX = 4
"""The deepest level keeps at least 4x4 px."""
GIB_PER_IMAGE_512 = 17.0 / 16
"""Peak GPU memory 34 and 68 GiB with 2 and 4 trials per H100 at batch 16, 512², base 64, bfloat16: 17 GiB a trial."""
TRIALS_PER_GPU = 2
"""pbs/worker.pbs starts 2 workers per GPU (2.53x one worker's images per second)."""
MEMORY_HEADROOM = 0.9
"""A tenth of each worker's share of the GPU kept free."""
DEFAULT_GPU_GIB = 80.0
"""The H100 80GB of the measurements, assumed when nvidia-smi cannot say."""
GPU_IMAGES_PER_S_512 = 217.0
"""U-Net, 512², base 64, batch 16, mixed_bfloat16 on an H100 (110 in float32: 1.97x)."""
GPU_TRIAL_SECONDS = 3600.0
"""A GPU trial may take up to an hour of training."""
CPU_PIXELS_PER_S = 12 * 81 * 128**2 / 18.4
"""A demo trial (128², base 8, depth 3, 81 training images) trained 12 epochs in 18.4 s on 2 cores."""
CPU_TRIAL_SECONDS = 18.4
"""A CPU trial as long as a demo trial."""
CPU_MIN_EPOCHS, CPU_MAX_EPOCHS = 6, 30
"""A CPU study tries the search out; the users' 100 epochs belong on a GPU."""
MIN_FULL_BATCHES = 1
"""An epoch trains on full batches only (drop_remainder), so a batch must not exceed the training images; one
batch an epoch is allowed: the users trained batches of 32 on their 62 training images."""
GPU_BUDGET, GPU_STARTUP = 120, 10
"""studies/microbead512.toml: 120 trials, the first 10 random before TPE models the space."""
CPU_BUDGET, CPU_STARTUP = 12, 4
"""studies/demo.toml: 12 trials, 4 random."""

DEVICES = ("gpu", "cpu")
REASON_WIDTH = 110
"""Comment lines in the study file."""
VALUE_WIDTH, TABLE_REASON_WIDTH = 28, 80
"""Columns of the printed table."""


class PlanError(UserError):
    """A data set or target that no study can be planned for, said in one line."""


@dataclass(frozen=True)
class Fingerprint:
    """What the rules read from a data set: `data.dataset_stats`, the spread of objects per image and the mask kind."""

    folder: Path
    n_images: int
    height: int
    width: int
    objects_mean: float
    objects_median: float
    objects_min: int
    objects_max: int
    objects_std: float
    foreground_fraction: float
    area_mean: float
    area_median: float
    label_masks: bool

    @property
    def side(self) -> int:
        """The shorter side (the side of square images)."""
        return min(self.height, self.width)

    @property
    def size(self) -> str:
        return f"{self.width}x{self.height}"

    @property
    def objects_cv(self) -> float:
        """Standard deviation / mean of objects per image (0 without objects)."""
        return self.objects_std / self.objects_mean if self.objects_mean else 0.0

    @property
    def dense(self) -> bool:
        return self.objects_mean >= DENSE_FROM_OBJECTS

    @property
    def small_objects(self) -> bool:
        return self.area_mean < SMALL_OBJECT_FRACTION * self.height * self.width

    def density(self) -> str:
        return f"{self.objects_mean:.1f} objects/image: {'dense' if self.dense else 'sparse'}"

    def rows(self) -> list[tuple[str, str]]:
        """The fingerprint as (what, value) rows, those of `optimize data-stats` first."""
        return [
            ("data", str(self.folder)),
            ("images", f"{self.n_images} of {self.width} x {self.height} px"),
            (
                "objects per image",
                f"{self.objects_mean:.1f} ({self.objects_min} to {self.objects_max}), median "
                f"{self.objects_median:.0f}, spread (std/mean) {self.objects_cv:.2f}",
            ),
            ("foreground fraction", f"{100 * self.foreground_fraction:.1f} %"),
            ("object size", f"~{self.area_mean:.0f} px (median {self.area_median:.0f} px)"),
            ("masks", "label images (touching beads kept apart)" if self.label_masks else "binary"),
        ]


def fingerprint(folder: str | Path, image_size: int | None = None) -> Fingerprint:
    """Load a data folder (as training will, resized to `image_size` if given) and measure it.

    Label-image masks count their labels as objects, so touching beads stay two; binary masks count
    connected components, as `optimize data-stats` does. Raises `data.DataError` for an unusable folder.
    """
    from data import dataset_stats, load_dataset
    from data._objects import bead_labels

    folder = Path(folder)
    _, masks = load_dataset(folder, image_size=image_size, labels=True)
    label_masks = bool(masks.max() > 1)
    stats = dataset_stats(masks > 0)
    per_image = [bead_labels(mask[..., 0]) for mask in masks]
    counts = np.array([int(labels.max()) for labels in per_image])
    areas = np.concatenate([np.bincount(labels.ravel())[1:] for labels in per_image])
    areas = areas[areas > 0]
    return Fingerprint(
        folder=folder,
        n_images=int(stats["n_images"]),
        height=int(stats["image_height"]),
        width=int(stats["image_width"]),
        objects_mean=float(counts.mean()),
        objects_median=float(np.median(counts)),
        objects_min=int(counts.min()),
        objects_max=int(counts.max()),
        objects_std=float(counts.std()),
        foreground_fraction=stats["foreground_fraction"],
        area_mean=float(areas.mean()) if areas.size else 0.0,
        area_median=float(np.median(areas)) if areas.size else 0.0,
        label_masks=label_masks,
    )


@dataclass(frozen=True)
class Target:
    """Where the study will train: device (`gpu`/`cpu`), Keras backend and GPU memory, each with its source."""

    device: str
    backend: str
    gpu_gib: float = DEFAULT_GPU_GIB
    source: str = ""

    def __post_init__(self) -> None:
        if self.device not in DEVICES:
            raise PlanError(f"device {self.device!r} is not one of {', '.join(DEVICES)}")


def gpu_memory_gib() -> tuple[float, str]:
    """The smallest GPU's memory as `nvidia-smi` reports it, or the H100's 80 GiB of the benchmarks (assumed)."""
    try:
        listing = subprocess.run(
            ["nvidia-smi", "--query-gpu=memory.total", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        mib = [float(line) for line in listing.stdout.split() if line.strip()]
    except (OSError, ValueError, subprocess.TimeoutExpired):
        mib = []
    if mib and listing.returncode == 0:
        return min(mib) / 1024, "nvidia-smi"
    return DEFAULT_GPU_GIB, "assumed: an H100 80GB, as measured in bench/RESULTS.md"


def detect_target(device: str | None, visible_gpus: list[str], gpu_source: str) -> Target:
    """The target for `--device` (None: a GPU when one is visible, from `optimize.workers.pool.visible_gpus`)."""
    if device is None:
        device = "gpu" if visible_gpus else "cpu"
        how = f"{len(visible_gpus)} GPU(s) visible ({gpu_source})" if visible_gpus else f"no GPU visible ({gpu_source})"
    else:
        how = f"--device {device}"
    gib, memory_source = gpu_memory_gib() if device == "gpu" else (DEFAULT_GPU_GIB, "")
    source = f"{how}; GPU memory {gib:.0f} GiB ({memory_source})" if device == "gpu" else how
    return Target(device=device, backend=keras_backend(), gpu_gib=gib, source=source)


@dataclass(frozen=True)
class Choice:
    """Settings of one section of the study file, decided together by one rule, and why."""

    section: str
    settings: dict[str, Any]
    reason: str


@dataclass(frozen=True)
class WarmStart:
    """A known configuration, and why it is left out of the study (None: enqueued)."""

    note: str
    params: dict[str, Any]
    left_out: str | None = None


@dataclass
class Plan:
    """A planned study: its choices in file order, its warm starts, the fingerprint and target it came from."""

    name: str
    fingerprint: Fingerprint
    target: Target
    description: str
    choices: list[Choice] = field(default_factory=list)
    warm_starts: list[WarmStart] = field(default_factory=list)

    def value(self, section: str, key: str) -> Any:
        """A planned setting (KeyError when the plan does not set it)."""
        for choice in self.choices:
            if choice.section == section and key in choice.settings:
                return choice.settings[key]
        raise KeyError(f"[{section}] {key}")

    def training_values(self) -> dict[str, Any]:
        return {k: v for c in self.choices if c.section == "training" for k, v in c.settings.items()}

    def search_values(self) -> dict[str, Any]:
        return {k: v for c in self.choices if c.section == "search" for k, v in c.settings.items()}

    def toml(self) -> str:
        """The study file: each choice's reason as `#` comments above its settings."""
        lines = [
            f"# Planned by `optimize new-study {self.name}` from the data; each setting says why. Edit freely.",
            f"description = {_toml(self.description)}",
            "",
        ]
        for label, value in self.fingerprint.rows():
            lines += _comment(f"{label}: {value}")
        lines += _comment(f"target: {self.target.device}, Keras backend {self.target.backend} ({self.target.source})")
        for section in dict.fromkeys(choice.section for choice in self.choices):
            lines += ["", f"[{section}]"]
            for choice in (c for c in self.choices if c.section == section):
                lines += _comment(choice.reason)
                lines += [f"{key} = {_toml(value)}" for key, value in choice.settings.items()]
        lines.append("")
        lines += _comment(self.warm_start_reason())
        for start in self.warm_starts:
            if start.left_out is None:
                lines.append(f"[[enqueue]]  # {start.note}")
                lines += [f"{key} = {_toml(value)}" for key, value in start.params.items()]
                lines.append("")
        return "\n".join(lines).rstrip("\n") + "\n"

    def warm_start_reason(self) -> str:
        used = [start.note for start in self.warm_starts if start.left_out is None]
        left = [f"{start.note} ({start.left_out})" for start in self.warm_starts if start.left_out]
        text = "Warm starts: the users' known configurations that lie in this space, tried first: "
        text += "; ".join(used) if used else "none"
        return text + (". Left out: " + "; ".join(left) + "." if left else ".")

    def table(self) -> str:
        """The plan as a plain-text table: one row per choice, its settings and values, its reason wrapped beside."""
        rows = [
            ([f"[{choice.section}] {key}" for key in choice.settings], list(choice.settings.values()), choice.reason)
            for choice in self.choices
        ]
        enqueued = sum(start.left_out is None for start in self.warm_starts)
        rows.append((["[[enqueue]]"], [enqueued], self.warm_start_reason()))
        setting_width = max(len(key) for keys, _, _ in rows for key in keys)
        lines = [f"{'setting':<{setting_width}} | {'value':<{VALUE_WIDTH}} | reason"]
        lines.append(f"{'-' * setting_width}-+-{'-' * VALUE_WIDTH}-+-{'-' * TABLE_REASON_WIDTH}")
        for keys, values, reason in rows:
            left = []
            for key, value in zip(keys, values, strict=True):
                wrapped = textwrap.wrap(_toml(value), VALUE_WIDTH) or [""]
                left += [(key, wrapped[0])] + [("", more) for more in wrapped[1:]]
            right = textwrap.wrap(reason, TABLE_REASON_WIDTH)
            for index in range(max(len(left), len(right))):
                key, value = left[index] if index < len(left) else ("", "")
                text = right[index] if index < len(right) else ""
                lines.append(f"{key:<{setting_width}} | {value:<{VALUE_WIDTH}} | {text}".rstrip())
        return "\n".join(lines)

    def write(self, path: Path, force: bool = False) -> Path:
        """Check that the text loads as a study, then write it; an existing file needs `force`."""
        text = self.toml()
        parse_config(tomllib.loads(text), path=path, text=text)
        if path.exists() and not force:
            raise PlanError(f"{path} already exists; pass --force to overwrite it (it is left unchanged)")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return path


# --- The rules: each returns its choice(s) with the reason --------------------------------------------------------


def rule_data(fp: Fingerprint, data_dir: str) -> Choice:
    if fp.height != fp.width:
        return Choice(
            "data",
            {"dir": data_dir},
            f"the planned folder, relative to this file (--data overrides); its images of {fp.width}x{fp.height} "
            f"px are trained at their own size",
        )
    return Choice(
        "data",
        {"dir": data_dir, "image_size": fp.side},
        f"the planned folder, relative to this file (--data overrides); every rule below assumes images of "
        f"{fp.side}x{fp.side} px, so they are resized to that size",
    )


def rule_split(fp: Fingerprint) -> Choice:
    base = LARGE_VAL_FRACTION if fp.n_images >= LARGE_SET_IMAGES else SMALL_VAL_FRACTION
    why = f"{fp.n_images} images: {int(base * 100)} % validation (the users: 15 % of their 73 images, 10 % of 134)"
    fraction = base
    if fp.objects_cv > SPREAD_CV:
        wanted = min(MAX_VAL_FRACTION, math.ceil(STRATA / fp.n_images * 100) / 100)
        fraction = max(base, wanted)
        why += (
            f"; objects per image vary ({fp.objects_min} to {fp.objects_max}, spread {fp.objects_cv:.2f} > "
            f"{SPREAD_CV}): the split is stratified by {STRATA} quantile bins of objects per image, as the users' "
            f"was, so images with few and with many objects are on both sides"
        )
        if fraction > base:
            why += f"; raised to {fraction:g} so that validation holds an image of each bin"
    else:
        why += (
            f"; objects per image hardly vary (spread {fp.objects_cv:.2f} <= {SPREAD_CV}): stratifying "
            f"the split by them changes little"
        )
    return Choice("data", {"val_fraction": fraction, "split_seed": 0}, why)


def train_images(fp: Fingerprint, val_fraction: float) -> int:
    """Training images after the split (as `data.stratified_split` counts the validation images)."""
    n_val = min(max(math.ceil(fp.n_images * val_fraction), 1), fp.n_images - 1)
    return fp.n_images - n_val


def rule_model(fp: Fingerprint, target: Target) -> Choice:
    base, cap = (GPU_BASE_FILTERS, GPU_MAX_DEPTH) if target.device == "gpu" else (CPU_BASE_FILTERS, CPU_MAX_DEPTH)
    sides = (fp.height, fp.width)
    depth = 0
    for candidate in range(cap, 0, -1):
        if all(side % 2**candidate == 0 and side // 2**candidate >= MIN_BOTTLENECK_PX for side in sides):
            depth = candidate
            break
    if depth < 2:
        raise PlanError(
            f"{fp.folder}: images of {fp.size} px fit no U-Net of depth 2 or more (the side must be a multiple of 4 "
            f"and at least {4 * MIN_BOTTLENECK_PX} px); pass --image-size, e.g. {max(16, round(fp.side / 16) * 16)}"
        )
    if target.device == "gpu":
        why = f"GPU: the users' U-Net, base_filters {base}, depth {cap} (31.4M parameters)"
    else:
        why = f"CPU: studies/demo.toml's small models (base_filters {base}, depth up to {cap}), minutes on 2 cores"
    if depth < cap:
        why += f"; depth {depth}: {fp.size} px must be a multiple of 2**depth with >= {MIN_BOTTLENECK_PX} px left"
    return Choice("training", {"base_filters": base, "depth": depth}, why)


def rule_architecture() -> Choice:
    return Choice(
        "search",
        {"architecture": list(ARCHITECTURES)},
        "the users compared U-Net, ResU-Net and attention ResU-Net; attention U-Net completes the family",
    )


def nice(value: float) -> float:
    """`value` rounded on a log scale to the nearest 1, 2 or 5 times a power of ten."""
    exponent = math.floor(math.log10(value))
    steps = [mantissa * 10.0**power for power in (exponent, exponent + 1) for mantissa in (1, 2, 5)]
    best = min(steps, key=lambda step: abs(math.log(step / value)))
    return float(f"{best:.0e}")


def learning_rate_range(objects_per_image: float) -> tuple[float, float, float]:
    """(centre, low, high) of the searched learning rate for a density (see the constants)."""
    centre = SPARSE_LEARNING_RATE * (SPARSE_OBJECTS_PER_IMAGE / objects_per_image) ** LR_DENSITY_EXPONENT
    centre = min(max(centre, LR_CENTRE_LIMITS[0]), LR_CENTRE_LIMITS[1])
    return centre, nice(centre / LR_BELOW), nice(centre * LR_ABOVE)


def rule_learning_rate(fp: Fingerprint) -> Choice:
    centre, low, high = learning_rate_range(fp.objects_mean)
    why = (
        f"{fp.density()}; the users' dense beads ({DENSE_OBJECTS_PER_IMAGE:g}/image) needed lr "
        f"{number(DENSE_LEARNING_RATE)}, 10x below the sparse set's {number(SPARSE_LEARNING_RATE)} "
        f"({SPARSE_OBJECTS_PER_IMAGE:g}/image): the power law through both gives {number(float(f'{centre:.2g}'))} "
        f"here; search {number(low)}..{number(high)} (log), "
        f"{LR_BELOW:g}x below to {LR_ABOVE:g}x above"
    )
    return Choice("search", {"learning_rate": {"low": low, "high": high, "log": True}}, why)


def gib_per_image(pixels: int, base_filters: int, mixed: bool) -> float:
    """GPU memory of a trial per image of its batch, scaled from the H100 measurement at 512², base 64, bfloat16."""
    return GIB_PER_IMAGE_512 * pixels / 512**2 * (base_filters / 64) * (1 if mixed else 2)


def rule_batch_size(fp: Fingerprint, target: Target, base_filters: int, n_train: int, mixed: bool) -> Choice:
    cap = DENSE_MAX_BATCH if fp.dense else SPARSE_MAX_BATCH
    reasons = [
        f"{fp.density()}: up to {cap} (the users: dense beads trained with 32 to average out their gradients, "
        f"sparse objects with 8-16)"
    ]
    if target.device == "gpu":
        per_image = gib_per_image(fp.height * fp.width, base_filters, mixed)
        share = target.gpu_gib / TRIALS_PER_GPU * MEMORY_HEADROOM
        fits = int(share // per_image)
        reasons.append(
            f"memory: ~{per_image:.2g} GiB per {fp.size} image at base {base_filters} (17 GiB a trial at batch 16, "
            f"512², bfloat16 on an H100), {TRIALS_PER_GPU} trials per {target.gpu_gib:.0f} GiB GPU: up to {fits}"
        )
    else:
        fits = SPARSE_MAX_BATCH
        reasons.append(f"CPU: up to {fits} (studies/demo.toml), a step's time grows with the batch")
    by_steps = n_train // MIN_FULL_BATCHES
    reasons.append(f"{n_train} training images: at most {by_steps}, an epoch trains on full batches only")
    if fits < 1:
        raise PlanError(
            f"{fp.folder}: one {fp.size} image needs ~{per_image:.2g} GiB at base {base_filters}, more than a "
            f"trial's share of a {target.gpu_gib:.0f} GiB GPU ({share:.0f} GiB at {TRIALS_PER_GPU} trials per GPU); "
            "plan for smaller images with --image-size"
        )
    sizes = [size for size in BATCH_SIZES if size <= min(cap, fits, by_steps)]
    if not sizes:
        sizes = [max(1, min(BATCH_SIZES[0], by_steps, fits))]
        reasons.append(f"none of {list(BATCH_SIZES)} fits: batch {sizes[0]}")
    if len(sizes) == 1:
        return Choice("training", {"batch_size": sizes[0]}, "; ".join(reasons) + "; one size left: fixed")
    return Choice("search", {"batch_size": sizes}, "; ".join(reasons))


def rule_dropout(fp: Fingerprint) -> Choice:
    if fp.dense:
        return Choice(
            "search",
            {"dropout": list(DENSE_DROPOUT)},
            f'{fp.density()}: many uniform objects overfit ("the model memorises circles"); the users\' good '
            f"configurations all use 0.3",
        )
    return Choice(
        "search",
        {"dropout": list(SPARSE_DROPOUT)},
        f"{fp.density()}: the users' sparse mitochondria trained without dropout; up to 0.2 against overfitting "
        f"a small set",
    )


def rule_losses(fp: Fingerprint) -> Choice:
    size = f"objects ~{fp.area_mean:.0f} px, {100 * fp.area_mean / (fp.height * fp.width):.2g} % of an image"
    if fp.dense and fp.small_objects:
        return Choice(
            "search",
            {"loss": list(DENSE_SMALL_LOSSES)},
            f"small dense objects ({fp.density()}, {size}): the users' 512² search ranked combined best (0.164), "
            f"focal steadiest, dice worst there but best at 256² (0.2456); the Tversky family weighs false "
            f"positives against false negatives of touching beads",
        )
    losses = list(SPARSE_LOSSES)
    why = (
        f"{'sparse' if not fp.dense else 'large'} objects ({fp.density()}, {size}): dice (overlap), focal (the "
        f"users' loss for sparse mitochondria) and their sum; Tversky's weighting is for small touching objects"
    )
    if fp.foreground_fraction < RARE_FOREGROUND:
        losses.append("focal_tversky")
        why += (
            f"; foreground {100 * fp.foreground_fraction:.1f} % < {100 * RARE_FOREGROUND:g} %: focal Tversky "
            f"added for the extreme imbalance"
        )
    return Choice("search", {"loss": losses}, why)


def rule_epochs(fp: Fingerprint, target: Target, n_train: int) -> Choice:
    pixels = n_train * fp.height * fp.width
    if target.device == "gpu":
        rate = GPU_IMAGES_PER_S_512 * 512**2
        epochs = min(GPU_MAX_EPOCHS, max(1, int(GPU_TRIAL_SECONDS * rate / pixels)))
        why = (
            f"GPU: the users' {GPU_MAX_EPOCHS} epochs, unless {n_train} training images of {fp.size} at "
            f"{GPU_IMAGES_PER_S_512:g} img/s at 512² (H100, bfloat16) take more than {GPU_TRIAL_SECONDS / 60:.0f} min"
        )
    else:
        fit = int(CPU_TRIAL_SECONDS * CPU_PIXELS_PER_S / pixels)
        epochs = min(CPU_MAX_EPOCHS, max(CPU_MIN_EPOCHS, fit))
        why = (
            f"CPU: {n_train} training images of {fp.size} fit {fit} epochs in a demo trial's {CPU_TRIAL_SECONDS:g} s "
            f"(12 epochs of 81 images of 128²), kept within {CPU_MIN_EPOCHS}..{CPU_MAX_EPOCHS}"
        )
    patience = max(3, round(PATIENCE_FRACTION * epochs))
    why += (
        f"; patience {patience}: {int(PATIENCE_FRACTION * 100)} % of the epochs, as the users' 30 of 100 (their best "
        f"model peaked at epoch 52)"
    )
    return Choice("training", {"max_epochs": epochs, "patience": patience}, why)


def rule_pruner(max_epochs: int) -> Choice:
    factor = ASHA_REDUCTION_FACTOR
    first = max(ASHA_MIN_FIRST_RUNG, round(ASHA_FIRST_RUNG_FRACTION * max_epochs))
    while first > 1 and first * factor > max_epochs:
        first -= 1
    pruner = PrunerConfig(kind="asha", min_resource=first, reduction_factor=factor, min_early_stopping_rate=0)
    rungs = pruner.asha_rungs(max_epochs)
    why = (
        f"ASHA rungs at epochs {', '.join(map(str, rungs))} of {max_epochs}: a trial continues past a rung only in "
        "the top half (at its last epoch a trial completes, never pruned); the first rung at "
        f"~{int(ASHA_FIRST_RUNG_FRACTION * 100)} % of the epochs, not before epoch "
        f"{ASHA_MIN_FIRST_RUNG}: on the users' grid replayed (bench/replay.py) this reaches the grid's best within "
        "1/3 of its epochs in every replay, earlier or sharper rungs prune its slow-starting best"
    )
    return Choice(
        "pruner",
        {"kind": "asha", "min_resource": first, "reduction_factor": factor, "min_early_stopping_rate": 0},
        why,
    )


def rule_precision(target: Target) -> Choice:
    if target.device == "gpu":
        jit_why = (
            "XLA: under JAX a step without it runs op by op (17x slower)"
            if target.backend == "jax"
            else f"XLA fuses the U-Net's element-wise ops (measured under JAX only; {target.backend} not measured)"
        )
        return Choice(
            "training",
            {"precision": "mixed_bfloat16", "jit_compile": True},
            f"GPU, backend {target.backend}: bfloat16 compute, float32 weights trained the U-Net 1.97x faster than "
            f"float32 on an H100 (217 vs 110 img/s; use mixed_float16 on GPUs without bfloat16); {jit_why}",
        )
    jit = target.backend == "jax"
    jit_why = (
        "JAX without XLA runs op by op: 16.8x slower on the 2-core CPU of bench/RESULTS.md"
        if jit
        else f"{target.backend} on a CPU: XLA gave 0.96-1.06x and a longer first compile (13 s against 8 s)"
    )
    return Choice(
        "training",
        {"precision": "float32", "jit_compile": jit},
        f"CPU, backend {target.backend}: float32 (bfloat16 is 0.11x without XLA and no faster with it); {jit_why}",
    )


def rule_budget(target: Target) -> list[Choice]:
    budget, startup, where = (
        (GPU_BUDGET, GPU_STARTUP, "microbead512.toml")
        if target.device == "gpu"
        else (CPU_BUDGET, CPU_STARTUP, "demo.toml")
    )
    return [
        Choice(
            "sampler",
            {"kind": "tpe", "n_startup_trials": startup},
            f"TPE after {startup} random trials ({where}); multivariate with constant liar (the defaults) for "
            f"parallel workers",
        ),
        Choice("budget", {"max_trials": budget}, f"{budget} trials for the whole study ({where})"),
    ]


def warm_starts(training: dict[str, Any], search: dict[str, Any]) -> list[WarmStart]:
    """The users' known configurations, each enqueued with the searched values, or left out saying why."""
    starts = []
    for note, params in KNOWN_GOOD:
        problems = []
        entry = {}
        for name, value in params.items():
            if name in search:
                space = search[name]
                inside = value in space if isinstance(space, list) else space["low"] <= value <= space["high"]
                if inside:
                    entry[name] = value
                else:
                    shown = space if isinstance(space, list) else f"{number(space['low'])}..{number(space['high'])}"
                    problems.append(
                        f"{name} {number(value)} not in {shown}"
                        if name == "learning_rate"
                        else f"{name} {value!r} not in {shown}"
                    )
            elif training.get(name) != value:
                problems.append(f"{name} {value!r} but the plan fixes {training.get(name)!r}")
        starts.append(WarmStart(note, entry, "; ".join(problems) or None))
    return starts


def make_plan(name: str, fp: Fingerprint, target: Target, data_dir: str) -> Plan:
    """The study plan for a fingerprint and target: every rule, in file order."""
    if fp.objects_mean == 0:
        raise PlanError(f"{fp.folder}: the masks hold no object; nothing to plan from (expected beads in masks/)")
    if fp.foreground_fraction >= 1:
        raise PlanError(
            f"{fp.folder}: every mask is entirely bead (no background pixel); a mask marks beads with non-zero "
            "pixels and background with 0"
        )
    if fp.n_images < 2:
        raise PlanError(
            f"{fp.folder}: {fp.n_images} image; a study needs at least 2 (one to train on, one to validate on)"
        )
    split = rule_split(fp)
    n_train = train_images(fp, split.settings["val_fraction"])
    model = rule_model(fp, target)
    precision = rule_precision(target)
    epochs = rule_epochs(fp, target, n_train)
    batch = rule_batch_size(
        fp, target, model.settings["base_filters"], n_train, precision.settings["precision"].startswith("mixed")
    )
    choices = [
        rule_data(fp, data_dir),
        split,
        model,
        precision,
        epochs,
        rule_architecture(),
        rule_learning_rate(fp),
        batch,
        rule_dropout(fp),
        rule_losses(fp),
        *rule_budget(target),
        rule_pruner(epochs.settings["max_epochs"]),
    ]
    order = ("data", "training", "search", "sampler", "pruner", "budget")
    choices.sort(key=lambda choice: order.index(choice.section))
    description = (
        f"Planned from {fp.folder.name}: {fp.n_images} images of {fp.size}, {fp.density()}, "
        f"for a {target.device.upper()} ({target.backend})."
    )
    plan = Plan(name=name, fingerprint=fp, target=target, description=description, choices=choices)
    plan.warm_starts = warm_starts(plan.training_values(), plan.search_values())
    return plan


def plan_study(name: str, data: str | Path, target: Target, studies: Path, image_size: int | None = None) -> Plan:
    """Fingerprint `data` and plan study `name` for a file in `studies` (the data path written relative to it)."""
    from data import DataError

    folder = Path(data).resolve()
    try:
        fp = fingerprint(folder, image_size)
    except DataError as error:
        raise PlanError(str(error)) from None
    return make_plan(name, fp, target, os.path.relpath(folder, studies.resolve()))


def number(value: float) -> str:
    """A float as people write small rates: 5e-4, 1.5e-5 (exponent form without padding)."""
    if not value or 1e-2 <= abs(value) < 1e4:
        return f"{value:g}"
    mantissa, exponent = f"{value:e}".split("e")
    return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"


def _comment(text: str) -> list[str]:
    return [f"# {line}" for line in textwrap.wrap(text, REASON_WIDTH)]


def _toml(value: Any) -> str:
    """One TOML value: strings, booleans, integers, floats (always with a point or exponent), lists, inline tables."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return number(value) if value and abs(value) < 1e-2 else repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{key} = {_toml(item)}" for key, item in value.items()) + " }"
    raise TypeError(f"no TOML form for {value!r}")

"""What one training run needs to know: the single place where training defaults live.

A study's `[training]` table and every search-space parameter name a field of `TrainSettings`,
so a trial's parameters are applied with `dataclasses.replace(base, **params)`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from losses import LOSS_NAMES, LOSS_SETTINGS, default_params, params_from_settings
from models import ARCHITECTURES, NORMS
from optimize.limits import MAX_SEED

MAX_BASE_FILTERS = 1024
"""The widest first level: a U-Net of base 1024 and depth 4 has some 8 billion weights."""

SCHEDULES = ("none", "plateau", "cosine")
PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")
AUGMENT_ON = ("device", "host")
"""Where the flips/rotations run: inside the compiled step (`data.DihedralTraining`), or in the host's batches."""
XLA_AUTOTUNE_LEVELS = range(0, 5)
XLA_DEFAULT_LEVEL = 4
"""XLA's own autotune level, which `$XLA_FLAGS` need not name."""
PROCESS_SETTINGS = ("xla_autotune_level",)
"""Settings read once per worker process (`optimize.training.autotune`): set in `[training]`, never searched."""


@dataclass(frozen=True)
class TrainSettings:
    """One training configuration. `batch_size` is the effective batch the optimizer sees;
    each step runs `batch_size // gradient_accumulation_steps` images at a time.

    `focal_*`, `tversky_*` and `combined*_focal_weight` set the parameters of the losses that take them
    (`losses.LOSS_SETTINGS`); their defaults are read from the losses' catalogue, so a study that sets none of them
    trains the same loss as `losses.get(loss)`.

    `steps_per_execution` 0 picks it by device: one execution per epoch on a GPU, one step on a CPU
    (`optimize.training.train.steps_per_execution`).

    `xla_autotune_level` is XLA's GPU autotuning level for the worker's process (0 off ... 4, XLA's default;
    `optimize.training.autotune`).
    """

    architecture: str = "unet"
    base_filters: int = 64
    depth: int = 4
    dropout: float = 0.0
    norm: str = "batch"
    loss: str = "combined"
    focal_alpha: float = default_params("focal")["alpha"]
    focal_gamma: float = default_params("focal")["gamma"]
    tversky_alpha: float = default_params("tversky")["alpha"]
    tversky_beta: float = default_params("tversky")["beta"]
    combined_focal_weight: float = default_params("combined")["weights"][1]
    combined_tversky_focal_weight: float = default_params("combined_tversky")["weights"][1]
    learning_rate: float = 1e-4
    batch_size: int = 8
    gradient_accumulation_steps: int = 1
    clipnorm: float = 0.0
    schedule: str = "none"
    warmup_epochs: int = 0
    plateau_factor: float = 0.5
    plateau_patience: int = 5
    precision: str = "float32"
    jit_compile: bool = False
    run_eagerly: bool = False
    max_epochs: int = 100
    patience: int = 30
    augment: bool = True
    augment_on: str = "device"
    steps_per_execution: int = 0
    xla_autotune_level: int = XLA_DEFAULT_LEVEL
    drop_remainder: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        problems = list(_problems(self))
        if problems:
            raise ValueError("; ".join(problems))

    @property
    def micro_batch_size(self) -> int:
        """Images per forward/backward pass."""
        return self.batch_size // self.gradient_accumulation_steps

    def loss_params(self) -> dict[str, Any]:
        """The keyword arguments of `losses.get(self.loss, ...)`: the loss settings this loss takes."""
        return params_from_settings(self.loss, {name: getattr(self, name) for name in LOSS_SETTINGS})

    def replace(self, **changes: object) -> TrainSettings:
        """A copy with `changes` applied (and validated)."""
        return dataclasses.replace(self, **changes)


def field_names() -> tuple[str, ...]:
    """Names a study config may set in `[training]` or search in `[search]`."""
    return tuple(field.name for field in dataclasses.fields(TrainSettings))


def field_types() -> dict[str, type]:
    """Python type of every field, from the defaults (bool before int matters to callers)."""
    defaults = TrainSettings()
    return {name: type(getattr(defaults, name)) for name in field_names()}


def _problems(settings: TrainSettings):
    choices = {
        "architecture": ARCHITECTURES,
        "loss": LOSS_NAMES,
        "norm": NORMS,
        "schedule": SCHEDULES,
        "precision": PRECISIONS,
        "augment_on": AUGMENT_ON,
    }
    for name, allowed in choices.items():
        value = getattr(settings, name)
        if value not in allowed:
            yield f"{name} = {value!r} is not one of {', '.join(allowed)}"
    positive = (
        "base_filters",
        "depth",
        "learning_rate",
        "batch_size",
        "gradient_accumulation_steps",
        "max_epochs",
        "patience",
        "plateau_patience",
    )
    for name in positive:
        if getattr(settings, name) <= 0:
            yield f"{name} = {getattr(settings, name)!r} must be > 0"
    if settings.base_filters > MAX_BASE_FILTERS:
        yield (
            f"base_filters = {settings.base_filters!r} must be <= {MAX_BASE_FILTERS}: a U-Net's deepest level has "
            "base_filters x 2^depth filters (users' models: 16 to 64)"
        )
    if not 0.0 <= settings.dropout < 1.0:
        yield f"dropout = {settings.dropout!r} must be in [0, 1)"
    for name in ("focal_alpha", "combined_focal_weight", "combined_tversky_focal_weight"):
        if not 0.0 <= getattr(settings, name) <= 1.0:
            yield f"{name} = {getattr(settings, name)!r} must be in [0, 1]"
    for name in ("focal_gamma", "tversky_alpha", "tversky_beta"):
        if getattr(settings, name) < 0:
            yield f"{name} = {getattr(settings, name)!r} must be >= 0"
    if not 0.0 < settings.plateau_factor < 1.0:
        yield f"plateau_factor = {settings.plateau_factor!r} must be in (0, 1)"
    if settings.steps_per_execution < 0:
        yield f"steps_per_execution = {settings.steps_per_execution!r} must be >= 0 (0: chosen by the device)"
    if settings.xla_autotune_level not in XLA_AUTOTUNE_LEVELS:
        level = settings.xla_autotune_level
        yield f"xla_autotune_level = {level!r} must be 0 to 4 (0: no autotuning, 4: XLA's default)"
    if not 0 <= settings.seed <= MAX_SEED:
        yield f"seed = {settings.seed!r} must be in 0..{MAX_SEED}"
    if settings.clipnorm < 0 or settings.warmup_epochs < 0:
        yield "clipnorm and warmup_epochs must be >= 0"
    if settings.batch_size % settings.gradient_accumulation_steps:
        yield (
            f"batch_size = {settings.batch_size} is not divisible by "
            f"gradient_accumulation_steps = {settings.gradient_accumulation_steps}"
        )

"""A CPU refused for a study sized for a GPU, and where trials train said at the start of a run.

A GPU-sized study on a CPU does not fail: it runs, for days. So before any trial starts, a run
says which device Keras' backend will use; when that is a CPU and the study's settings are sized
for a GPU, it measures one training step, estimates an epoch from it, and stops unless the user
passed `--allow-cpu`.
"""

from __future__ import annotations

import time
from typing import TextIO

import numpy as np

import losses
from optimize.errors import UsageError
from optimize.results.formatting import format_duration
from optimize.search.config import StudyConfig
from optimize.training.dataset import StudyData
from optimize.training.device import training_device, training_gpus
from optimize.training.garbage import release_memory
from optimize.training.out_of_memory import is_out_of_memory
from optimize.training.train import build_model, dtype_policy, make_optimizer

GPU_SIZED_IMAGE = 256
GPU_SIZED_BASE_FILTERS = 32


def gpu_sized(config: StudyConfig, image_side: int) -> list[str]:
    """The study settings that are sized for a GPU (empty when a CPU is a fair place to run it).

    A searched setting counts by the smallest model it allows: searching base_filters [4, 64] can train on a CPU.
    """
    reasons = []
    if image_side >= GPU_SIZED_IMAGE:
        reasons.append(f"{image_side}x{image_side} images")
    base_filters = min(_possible_values(config, "base_filters"))
    if base_filters >= GPU_SIZED_BASE_FILTERS:
        searched = " and up (searched)" if config.search.get("base_filters") else ""
        reasons.append(f"base_filters {base_filters}{searched}")
    precisions = _possible_values(config, "precision")
    if all(precision.startswith("mixed") for precision in precisions):
        reasons.append(f"precision {', '.join(precisions)}")
    return reasons


def _possible_values(config: StudyConfig, name: str) -> tuple:
    """The values a trial can take for a setting: its searched choices, its range's low end, or its fixed value."""
    spec = config.search.get(name)
    if spec is None:
        return (getattr(config.training, name),)
    return spec.choices if spec.is_categorical else (spec.low,)


def check_device(
    config: StudyConfig, data: StudyData, allow_cpu: bool, stream: TextIO, gpu_requested: str | None = None
) -> list[str]:
    """Print where trials train and return the GPUs seen (none: the CPU); raise UsageError for a GPU-sized
    study on a CPU without `allow_cpu`, and for any study when this worker was started for GPU `gpu_requested`
    (`--gpus`) but its backend sees none: asking for a GPU and getting the CPU is an error, not a fallback."""
    gpus = training_gpus()
    if gpus:
        note = "  (--allow-cpu is not needed)" if allow_cpu else ""
        print(f"device GPU: {', '.join(gpus)}{note}", file=stream, flush=True)
        return gpus
    _, detail = training_device()
    if gpu_requested is not None:
        raise UsageError(
            f"--gpus: this worker was started for GPU {gpu_requested}, but {detail}, so it would train on the CPU; "
            "install a backend with CUDA (pip install -e '.[gpu]' for TensorFlow, or JAX with CUDA), or drop --gpus"
        )
    reasons = gpu_sized(config, data.train[0].shape[1])
    if not reasons or allow_cpu:
        sized = f"; the study is sized for a GPU ({', '.join(reasons)}), allowed by --allow-cpu" if reasons else ""
        if allow_cpu and not reasons:
            sized = "  (--allow-cpu is not needed: the study is not sized for a GPU)"
        print(f"device CPU ({detail}){sized}", file=stream, flush=True)
        return []
    print(f"device CPU ({detail}); timing one training step of the study's first model ...", file=stream, flush=True)
    try:
        seconds_per_image = measure_step(config, data)
    except Exception as error:
        if not is_out_of_memory(error):
            raise
        release_memory()
        raise UsageError(
            f"{config.path}: the study is sized for a GPU ({', '.join(reasons)}) and no GPU is visible ({detail}); "
            "on this CPU one training step of its first model ran out of memory; run on a GPU node"
        ) from None
    images = len(data.train[0])
    epoch = seconds_per_image * images
    trial = epoch * config.training.max_epochs
    raise UsageError(
        f"{config.path}: the study is sized for a GPU ({', '.join(reasons)}) and no GPU is visible ({detail}); "
        f"on this CPU one training step took {seconds_per_image:.1f} s per image, so an epoch of {images} images "
        f"takes about {format_duration(epoch)} and a trial of up to {config.training.max_epochs} epochs about "
        f"{format_duration(trial)}; run on a GPU node, or pass --allow-cpu to train on the CPU anyway"
    )


def several_gpus_note(gpus: list[str]) -> str | None:
    """Keras trains on the first GPU it sees: a worker that sees several leaves the others idle."""
    if len(gpus) < 2:
        return None
    return (
        f"note: this worker trains on the first of the {len(gpus)} GPUs it sees; --gpus all-visible runs one "
        "worker per GPU (--trials-per-gpu 2: two)"
    )


def measure_step(config: StudyConfig, data: StudyData) -> float:
    """Seconds of a one-image training step of the study's first model (its [training] settings and first
    [[enqueue]] entry), after a first step that compiles it: one image keeps the measurement short."""
    settings = config.training
    if config.enqueue:
        known = {key: value for key, value in config.enqueue[0].items() if hasattr(settings, key)}
        settings = settings.replace(**known)
    images, masks = (np.asarray(array[:1], np.float32) for array in data.train)
    with dtype_policy(settings.precision):
        model = build_model(settings, input_shape=images.shape[1:])
        model.compile(
            optimizer=make_optimizer(settings, steps_per_epoch=1),
            loss=losses.get(settings.loss, **settings.loss_params()),
            jit_compile=settings.jit_compile,
        )
        model.train_on_batch(images, masks)
        started = time.perf_counter()
        model.train_on_batch(images, masks)
        seconds = time.perf_counter() - started
    release_memory()
    return seconds

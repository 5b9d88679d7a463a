"""`optimize warm-cache`: compile a study's programs once, on one GPU, before its workers start.

Every trial builds a new model, and under JAX on a GPU a new worker spends 73–77 s compiling and
autotuning its first 512² program (bench/RESULTS.md). The programs a search can draw are few: the
settings that shape the convolutions (`PROGRAM_SETTINGS`: architecture, width, depth, normalisation,
micro-batch, precision, XLA) take a handful of values. This trains each distinct program for one epoch
on the study's data, so that JAX's persistent cache holds its compiled step and XLA's autotuning of its
convolutions; the workers of the job array then load them instead of compiling. The other searched
settings (loss, learning rate, dropout) take their first choice or the study's value: trials with those
find their whole program cached, the others still find their convolutions tuned.
"""

from __future__ import annotations

import itertools
import time
from typing import TextIO

from optimize.errors import UsageError
from optimize.search.config import StudyConfig
from optimize.search.settings import TrainSettings

PROGRAM_SETTINGS = (
    "architecture",
    "base_filters",
    "depth",
    "norm",
    "batch_size",
    "gradient_accumulation_steps",
    "precision",
    "jit_compile",
)
"""The settings that decide which convolutions a trial compiles (`optimize.training.timing.compiled_program`)."""


def program_settings(config: StudyConfig) -> tuple[list[TrainSettings], list[str]]:
    """One `TrainSettings` per combination of the searched program settings' choices, and the names of
    the program settings searched as ranges (their programs cannot be listed, so they are left out)."""
    base = config.training
    searched = {param.name: param for param in config.search}
    for param in config.search:
        if param.name not in PROGRAM_SETTINGS and param.is_categorical:
            base = base.replace(**{param.name: param.choices[0]})
    choices = {
        name: searched[name].choices for name in PROGRAM_SETTINGS if name in searched and searched[name].is_categorical
    }
    ranges = [name for name in PROGRAM_SETTINGS if name in searched and not searched[name].is_categorical]
    combinations = []
    for values in itertools.product(*choices.values()):
        try:
            combinations.append(base.replace(**dict(zip(choices, values, strict=True))))
        except ValueError:
            continue  # a combination the study's trials cannot draw either (e.g. an indivisible batch)
    return combinations, ranges


def distinct_programs(config: StudyConfig, image_shape: tuple[int, ...]) -> tuple[dict[str, TrainSettings], list[str]]:
    """The study's programs by name (`compiled_program`), each with the settings that compile it."""
    from optimize.training.timing import compiled_program

    combinations, ranges = program_settings(config)
    programs: dict[str, TrainSettings] = {}
    for settings in combinations:
        programs.setdefault(compiled_program(settings, image_shape), settings)
    return programs, ranges


def warm_cache(
    config: StudyConfig,
    stream: TextIO,
    *,
    data_dir: str | None = None,
    compile_cache: str | None = None,
    allow_cpu: bool = False,
    list_only: bool = False,
) -> int:
    """List the study's programs and, unless `list_only`, train each for one epoch into the compile cache."""
    from optimize.keras_import import import_keras

    import_keras()
    import keras

    from optimize.training.autotune import apply_autotune_level
    from optimize.training.compile_cache import enable_compile_cache, resolve_cache_dir
    from optimize.training.dataset import load_study_data
    from optimize.training.device_check import check_device
    from optimize.training.garbage import release_memory, startup_objects_frozen
    from optimize.training.train import train

    cache_dir = resolve_cache_dir(compile_cache)
    backend = keras.backend.backend()
    if not list_only:
        if backend != "jax":
            raise UsageError(
                f"warm-cache fills JAX's compile cache, and the {backend} backend keeps none: "
                "run it with KERAS_BACKEND=jax, as the GPU workers do (or --list to only list the programs)"
            )
        if cache_dir is None:
            raise UsageError("warm-cache with the compile cache off has nothing to fill: give --compile-cache DIR")
    data = load_study_data(config, data_dir)
    image_shape = data.train[0].shape[1:]
    programs, ranges = distinct_programs(config, image_shape)
    left_out = f"; not listed: {', '.join(ranges)} (searched as a range)" if ranges else ""
    where = "" if list_only else f", into {cache_dir}"
    print(f"study {config.name}: {len(programs)} distinct programs{where}{left_out}", file=stream, flush=True)
    if list_only:
        for name in programs:
            print(f"  {name}", file=stream)
        return 0
    autotune = apply_autotune_level(config.training.xla_autotune_level)
    if autotune is not None:
        print(f"{autotune}: the workers must use the same level to find these programs", file=stream)
    enable_compile_cache(cache_dir)
    check_device(config, data, allow_cpu, stream)
    started = time.perf_counter()
    with startup_objects_frozen():
        for number, (name, settings) in enumerate(programs.items(), start=1):
            began = time.perf_counter()
            train(settings.replace(max_epochs=1, patience=1), data.train, data.val)
            release_memory()
            seconds = time.perf_counter() - began
            print(f"program {number}/{len(programs)}  {name}  {seconds:.1f} s", file=stream, flush=True)
    total = time.perf_counter() - started
    print(f"warmed {len(programs)} programs in {total:.1f} s; workers with this cache load them", file=stream)
    return 0

"""Training speed of one trial on the current Keras backend, and where a trial's time goes.

For each architecture, precision (float32, mixed_bfloat16, and mixed_float16 on a GPU) and
`jit_compile` off/on: steady-state images per second of the training step (the project's model,
loss, metrics and optimizer, `model.fit` on one fixed batch repeated; the first epoch, which
compiles, is excluded), the analytic training FLOPs per image and the share of the device's peak.
Then the fixed costs of a trial: data generation, model build, compile + first steps, and the time
a short real `optimize.training.train` run spends outside its epochs. Uses only `keras`, so it runs
under `KERAS_BACKEND=jax` as well as TensorFlow.

    python bench/throughput.py                                                  # CPU: 128², base 16
    KERAS_BACKEND=jax python bench/throughput.py --size 512 --base-filters 64 --batch 16   # one H100
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import time
from dataclasses import dataclass

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from _common import (  # noqa: E402
    add_output_args,
    cpu_model,
    describe_machine,
    first_epoch_extra,
    gpu_names,
    markdown_table,
    publish,
)
from flops import TRAIN_FACTOR, forward_flops  # noqa: E402

import losses  # noqa: E402
import models  # noqa: E402
from data import make_microbeads, stratified_split  # noqa: E402
from optimize.search.settings import TrainSettings  # noqa: E402
from optimize.training.history import EpochHistory  # noqa: E402
from optimize.training.train import build_model, dtype_policy, make_optimizer, train  # noqa: E402

H100_BF16_DENSE_TFLOPS = 989.0
CPU_FP32_FLOPS_PER_CYCLE = 32  # AVX2: two 256-bit FMA units × 8 float32 lanes × 2 FLOPs
USERS_IMAGES = 86  # split 0.15: the users' 73 training images
GOAL_IMAGES_PER_SECOND, GOAL_OUTSIDE_FIT = 250.0, 0.05


def on_gpu() -> bool:
    return any(device.startswith(("gpu", "cuda")) for device in keras.distribution.list_devices())


def default_peak_tflops() -> tuple[float, str]:
    """The device's peak and how it was obtained."""
    if on_gpu():
        return H100_BF16_DENSE_TFLOPS, "H100 SXM bf16 dense tensor-core peak"
    _, ghz = cpu_model()
    ghz = ghz or 2.5
    cores = os.cpu_count() or 1
    peak = cores * CPU_FP32_FLOPS_PER_CYCLE * ghz / 1000
    source = f"CPU estimate: {cores} cores × {CPU_FP32_FLOPS_PER_CYCLE} float32 FLOP/cycle (AVX2 FMA) × {ghz:.2f} GHz"
    return peak, source


@dataclass
class Speed:
    """One architecture × precision × jit setting: build, first epoch and steady-state figures."""

    settings: TrainSettings
    build_seconds: float
    first_epoch_seconds: float
    step_seconds: float
    forward_gflop: float
    steps_per_epoch: int = 0
    error: str = ""

    @property
    def images_per_second(self) -> float:
        return self.settings.batch_size / self.step_seconds

    @property
    def compile_seconds(self) -> float:
        """First epoch minus a steady epoch of as many steps: tracing, compilation, autotuning."""
        return self.first_epoch_seconds - self.step_seconds * self.steps_per_epoch


def measure_speed(settings: TrainSettings, batch: tuple[np.ndarray, np.ndarray], steps: int, repeats: int) -> Speed:
    """Fit on `batch` repeated `steps` times per epoch for 1 + `repeats` epochs; the first epoch compiles."""
    keras.backend.clear_session()
    gc.collect()
    images, masks = (np.repeat(array, steps, axis=0) for array in batch)
    with dtype_policy(settings.precision):
        started = time.perf_counter()
        model = build_model(settings, input_shape=images.shape[1:])
        build_seconds = time.perf_counter() - started
        model.compile(
            optimizer=make_optimizer(settings, steps_per_epoch=steps),
            loss=losses.get(settings.loss),
            metrics=losses.metrics(),
            jit_compile=settings.jit_compile,
            run_eagerly=settings.run_eagerly,
        )
        timer = EpochHistory()
        model.fit(
            images,
            masks,
            batch_size=settings.batch_size,
            epochs=1 + repeats,
            shuffle=False,
            verbose=0,
            callbacks=[timer],
        )
    epoch_seconds = [row["seconds"] for row in timer.rows]
    speed = Speed(
        settings=settings,
        build_seconds=build_seconds,
        first_epoch_seconds=epoch_seconds[0],
        step_seconds=statistics.median(epoch_seconds[1:]) / steps,
        forward_gflop=forward_flops(model) / 1e9,
        steps_per_epoch=steps,
    )
    del model
    return speed


def speed_rows(speeds: list[Speed], peak_tflops: float) -> list[list[str]]:
    rows = []
    for speed in speeds:
        s = speed.settings
        if speed.error:
            rows.append([s.architecture, s.precision, "on" if s.jit_compile else "off", *["—"] * 6, speed.error])
            continue
        achieved = speed.images_per_second * TRAIN_FACTOR * speed.forward_gflop / 1000
        rows.append(
            [
                s.architecture,
                s.precision,
                "on" if s.jit_compile else "off",
                f"{speed.images_per_second:.1f}",
                f"{1000 * speed.step_seconds:.0f}",
                f"{speed.forward_gflop:.3g}",
                f"{100 * achieved / peak_tflops:.1f}",
                f"{speed.build_seconds:.1f}",
                f"{speed.compile_seconds:.1f}",
                "",
            ]
        )
    return rows


def relative_rows(speeds: list[Speed]) -> list[list[str]]:
    """Each setting's speed ÷ float32 without jit for the same architecture, from this run."""
    base = {
        s.settings.architecture: s.images_per_second
        for s in speeds
        if not s.error and s.settings.precision == "float32" and not s.settings.jit_compile
    }
    rows = []
    for speed in speeds:
        s = speed.settings
        if speed.error or s.architecture not in base or (s.precision == "float32" and not s.jit_compile):
            continue
        ratio = speed.images_per_second / base[s.architecture]
        rows.append([s.architecture, s.precision, "on" if s.jit_compile else "off", f"{ratio:.2f}×"])
    return rows


@dataclass
class TrialCosts:
    """Where a short real `train()` run spends its time (seconds)."""

    data_seconds: float
    train_seconds: float
    epoch_seconds: list[float]

    @property
    def outside_fit(self) -> float:
        return self.train_seconds - sum(self.epoch_seconds)

    @property
    def first_epoch_extra(self) -> float:
        return first_epoch_extra(self.epoch_seconds)


def measure_trial(settings: TrainSettings, size: int, n_images: int) -> TrialCosts:
    """Generate the data (once per worker in the service), then one real `optimize.training.train` run."""
    keras.backend.clear_session()
    gc.collect()
    started = time.perf_counter()
    images, masks = make_microbeads(n_images, size, seed=0)
    train_index, val_index = stratified_split(masks, val_fraction=0.15, seed=0)
    data_seconds = time.perf_counter() - started
    result = train(settings, (images[train_index], masks[train_index]), (images[val_index], masks[val_index]))
    return TrialCosts(data_seconds, result.train_seconds, [row["seconds"] for row in result.history])


def trial_table(costs: TrialCosts, settings: TrainSettings) -> str:
    total = costs.train_seconds
    rows = [
        ["data: make_microbeads + split (once per worker)", f"{costs.data_seconds:.1f}", "—"],
        ["train() wall: build, compile, fit, restore", f"{total:.1f}", "100"],
        [f"sum of {len(costs.epoch_seconds)} epochs (EpochHistory)", f"{sum(costs.epoch_seconds):.1f}", ""],
        ["outside fit's epochs (build, compile(), fit setup/teardown)", f"{costs.outside_fit:.2f}", ""],
        ["first epoch − median later epoch (tracing/compilation)", f"{costs.first_epoch_extra:.1f}", ""],
    ]
    for row in rows[2:]:
        row[2] = f"{100 * float(row[1]) / total:.1f}"
    return markdown_table(["part of one trial", "seconds", "% of train()"], rows)


def goal_lines(speeds: list[Speed], costs: TrialCosts, size: int, base_filters: int) -> list[str]:
    outside = costs.outside_fit / costs.train_seconds
    lines = [f"goal: time outside fit < {100 * GOAL_OUTSIDE_FIT:.0f} %: {'✓' if outside < GOAL_OUTSIDE_FIT else '✗'} "]
    lines[0] += f"({100 * outside:.1f} % outside the epochs; compilation inside the first epoch is counted apart)"
    unet = [s.images_per_second for s in speeds if s.settings.architecture == "unet" and not s.error]
    goal = f"goal: ≥ {GOAL_IMAGES_PER_SECOND:.0f} img/s for the U-Net at 512², base 64, on one H100"
    if size == 512 and base_filters == 64 and on_gpu() and unet:
        lines.append(f"{goal}: {'✓' if max(unet) >= GOAL_IMAGES_PER_SECOND else '✗'} (best {max(unet):.0f} img/s)")
    else:
        measured = f"{size}², base {base_filters}, GPU {on_gpu()}" + ("" if unet else ", no U-Net")
        lines.append(f"{goal}: not measured here (this run: {measured})")
    return lines


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    gpu = on_gpu()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512 if gpu else 128, help="image side (default 512 GPU, 128 CPU)")
    parser.add_argument("--base-filters", type=int, default=64 if gpu else 16, help="default 64 GPU, 16 CPU")
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--batch", type=int, default=16 if gpu else 8, help="default 16 GPU, 8 CPU")
    parser.add_argument("--steps", type=int, default=20 if gpu else 4, help="steps per timed epoch")
    parser.add_argument("--repeats", type=int, default=5, help="timed epochs after the first (default 5)")
    parser.add_argument("--architectures", default=",".join(models.ARCHITECTURES))
    precisions = "float32,mixed_bfloat16" + (",mixed_float16" if gpu else "")
    parser.add_argument("--precisions", default=precisions, help=f"default {precisions}")
    parser.add_argument("--jit", default="off,on", help="jit_compile settings to measure (default off,on)")
    parser.add_argument("--trial-epochs", type=int, default=3, help="epochs of the real train() run (default 3)")
    parser.add_argument(
        "--trial-jit",
        choices=("auto", "off", "on"),
        default="auto",
        help="jit_compile of the real train() run; auto: on under JAX (off runs op by op), else off (the default)",
    )
    parser.add_argument("--trial-precision", default="float32", help="precision of the real train() run")
    parser.add_argument("--peak-tflops", type=float, default=None, help="device peak (default: H100 bf16 or CPU)")
    add_output_args(parser)
    args = parser.parse_args(argv)
    if args.smoke:
        args.size, args.base_filters, args.depth, args.batch, args.steps, args.repeats = 32, 4, 2, 2, 2, 1
        args.architectures, args.precisions, args.jit, args.trial_epochs = "unet", "float32", "off", 2
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    peak, peak_source = (args.peak_tflops, "--peak-tflops") if args.peak_tflops else default_peak_tflops()
    machine = describe_machine()
    base = TrainSettings(
        base_filters=args.base_filters,
        depth=args.depth,
        batch_size=args.batch,
        augment=False,
        max_epochs=100,
        run_eagerly=args.smoke,  # smoke: skip graph tracing, which costs more than the tiny model's steps
    )
    batch = make_microbeads(args.batch, args.size, seed=0)
    models.build("unet", (32, 32, 1), 4, 2)  # the backend's one-time start-up, not the first model's build time
    speeds = []
    for architecture in args.architectures.split(","):
        for precision in args.precisions.split(","):
            for jit in args.jit.split(","):
                settings = base.replace(architecture=architecture, precision=precision, jit_compile=jit == "on")
                try:
                    speeds.append(measure_speed(settings, batch, args.steps, args.repeats))
                except Exception as error:  # noqa: BLE001 - a setting the backend cannot run is a result too
                    speeds.append(Speed(settings, *[float("nan")] * 4, error=f"{type(error).__name__}: {error}"[:120]))
                last = speeds[-1]
                result = last.error or f"{last.images_per_second:.1f} img/s, 1st epoch {last.first_epoch_seconds:.1f} s"
                print(f"  {architecture} {precision} jit {jit}: {result}", file=sys.stderr, flush=True)
    trial_jit = args.trial_jit == "on" or (args.trial_jit == "auto" and keras.backend.backend() == "jax")
    trial_settings = base.replace(
        max_epochs=args.trial_epochs,
        patience=args.trial_epochs,
        augment=True,
        jit_compile=trial_jit,
        precision=args.trial_precision,
    )
    costs = measure_trial(trial_settings, args.size, 8 if args.smoke else USERS_IMAGES)
    unet_gflop = forward_flops(models.build("unet", (args.size, args.size, 1), args.base_filters, args.depth)) / 1e9
    device = "; ".join(gpu_names()) or cpu_model()[0]
    body = "\n\n".join(
        [
            f"Backend {keras.backend.backend()} on {device}. {args.size}² images, base_filters {args.base_filters}, "
            f"depth {args.depth}, batch {args.batch}, loss `combined` with the project's metrics and Adam; "
            f"steady state = median of {args.repeats} epochs of {args.steps} steps after the first epoch. "
            f"Peak {peak:g} TFLOP/s ({peak_source}); FLOPs are the analytic conv count × {TRAIN_FACTOR}. "
            f"U-Net physical limit at that peak: {peak * 1000 / (TRAIN_FACTOR * unet_gflop):.1f} img/s "
            f"({unet_gflop:.2f} GFLOP forward per image).",
            markdown_table(
                [
                    "architecture",
                    "precision",
                    "jit",
                    "img/s",
                    "ms/step",
                    "GFLOP fwd/img",
                    "% of peak",
                    "build (s)",
                    "compile + first steps (s)",
                    "error",
                ],
                speed_rows(speeds, peak),
            ),
            "Speed relative to float32 without jit, same architecture, this run:",
            markdown_table(["architecture", "precision", "jit", "speed ÷ float32 no-jit"], relative_rows(speeds))
            if relative_rows(speeds)
            else "(no other setting measured)",
            f"One real trial: `optimize.training.train` of the U-Net for {args.trial_epochs} epochs on "
            f"{8 if args.smoke else USERS_IMAGES} synthetic images (85/15 split), {args.trial_precision}, "
            f"jit {'on' if trial_jit else 'off'}, batch {args.batch}:",
            trial_table(costs, trial_settings),
            "\n".join(f"- {line}" for line in goal_lines(speeds, costs, args.size, args.base_filters)),
        ]
    )
    publish(args, f"Throughput ({keras.backend.backend()}{', smoke' if args.smoke else ''})", body, machine)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""A real epoch against its training steps alone, and whether the lean epoch still learns the same.

Times `optimize.training.train` (the trial's own training: its batches, validation, callbacks) with each
way of running an epoch, against the floor of the same number of its own training steps on one batch
that is already in memory, run as one call per epoch with no validation and no callbacks. A step with
device flips has them inside its compiled program, so its floor includes them; the host-flips step's
floor is the bare network's. Goal: a real epoch at most 1.15× its floor, the two timed in the same
round. The flips' floor at one step per call shows what the backend's own per-call work costs. Then
trains the old path (flips/rotations on the host, one step per call) and the project's defaults for the
same epochs on 3 seeds, and compares val Jaccard at the last epoch.

    python bench/epoch.py                                   # CPU: 64², base 8, depth 3, batch 4
    KERAS_BACKEND=jax python bench/epoch.py --size 512 --base-filters 64 --depth 4 --batch 32 \\
        --precision mixed_bfloat16 --jit                    # one GPU
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from _common import add_output_args, describe_machine, markdown_table, publish  # noqa: E402

import losses  # noqa: E402
from data import DihedralTraining, device_batches, make_microbeads, stratified_split  # noqa: E402
from optimize.search.settings import TrainSettings  # noqa: E402
from optimize.training.train import build_model, dtype_policy, make_optimizer, train  # noqa: E402

GOAL_RATIO = 1.15
USERS_IMAGES = 86  # split 0.15: the users' 73 training images


class EpochClock(keras.callbacks.Callback):
    """Wall seconds of each epoch, `on_epoch_begin` to `on_epoch_end`, and of its validation."""

    def __init__(self) -> None:
        super().__init__()
        self.epochs: list[float] = []
        self.validations: list[float] = []

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.started = time.perf_counter()

    def on_test_begin(self, logs: dict | None = None) -> None:
        self.test_started = time.perf_counter()

    def on_test_end(self, logs: dict | None = None) -> None:
        self.validations.append(time.perf_counter() - self.test_started)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.epochs.append(time.perf_counter() - self.started)


def steps_floor(
    settings: TrainSettings,
    images: np.ndarray,
    masks: np.ndarray,
    steps: int,
    epochs: int,
    flips: bool,
    steps_per_call: int,
) -> float:
    """Median seconds of `steps` training steps on one resident batch, `steps_per_call` steps per call,
    nothing else; each step flips and rotates its images on the device (as a trial's default step does)
    when `flips`."""
    batch = settings.micro_batch_size
    same_batch = device_batches(
        np.repeat(images[:batch], steps, axis=0), np.repeat(masks[:batch], steps, axis=0), batch, drop_remainder=True
    )
    keras.utils.set_random_seed(settings.seed)
    with dtype_policy(settings.precision):
        network = build_model(settings, images.shape[1:])
        model = DihedralTraining(network, seed=settings.seed) if flips else network
        model.compile(
            optimizer=make_optimizer(settings, steps),
            loss=losses.get(settings.loss, **settings.loss_params()),
            metrics=losses.metrics(),
            jit_compile=settings.jit_compile,
            steps_per_execution=steps_per_call,
        )
        clock = EpochClock()
        model.fit(same_batch, epochs=epochs, shuffle=False, callbacks=[clock], verbose=0)
    return statistics.median(clock.epochs[1:])


def timed_training(settings: TrainSettings, train_data, val_data) -> tuple[float, float, float, keras.Model]:
    """Median later epoch, its validation, the last epoch's val Jaccard and the trained model of one `train` run."""
    clock = EpochClock()
    result = train(settings, train_data, val_data, callbacks=[clock])
    last_val_jaccard = result.history[-1]["val_jaccard"]
    epoch, validation = statistics.median(clock.epochs[1:]), statistics.median(clock.validations[1:])
    return epoch, validation, last_val_jaccard, result.model


def best_weights_copy(model: keras.Model, repeats: int = 5) -> float:
    """Median seconds of `model.get_weights()`: the host copy that early stopping (`restore_best_weights`)
    makes inside the epoch after each epoch that improves val Jaccard."""
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        model.get_weights()
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds)


def own_floor(changes: dict) -> str:
    """The floor of a variant's own training step: with the flips inside it when they run on the device."""
    return "flips" if changes["augment_on"] == "device" else "bare"


def ok(passed: bool) -> str:
    return "yes" if passed else "no"


def learning_check(base: TrainSettings, epochs: int, seeds: list[int], train_data: tuple, val_data: tuple) -> list[str]:
    """Val Jaccard after `epochs` epochs, old path against the defaults, per seed: a sentence and a table
    (nothing when `epochs` is 0)."""
    if epochs == 0:
        return []
    rows, differences = [], []
    learning = base.replace(max_epochs=epochs, patience=epochs)
    for seed in seeds:
        values = []
        for changes in ({"augment_on": "host", "steps_per_execution": 1}, {}):
            values.append(timed_training(learning.replace(seed=seed, **changes), train_data, val_data)[2])
        differences.append(values[1] - values[0])
        rows.append([seed, f"{values[0]:.4f}", f"{values[1]:.4f}", f"{values[1] - values[0]:+.4f}"])
        print(f"seed {seed}: host {values[0]:.4f}, device {values[1]:.4f}", flush=True)
    spread = statistics.stdev(differences) if len(differences) > 1 else float("nan")
    return [
        f"Learning: val Jaccard at epoch {epochs} (learning rate 1e-3), the same data and seed for both; mean "
        f"difference {statistics.mean(differences):+.4f} (standard deviation {spread:.4f} over seeds).",
        markdown_table(["seed", "host flips (before)", "defaults (device flips)", "difference"], rows),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--base-filters", type=int, default=8)
    parser.add_argument("--depth", type=int, default=3)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--precision", default="float32")
    parser.add_argument("--jit", action="store_true", help="jit_compile on (always on under JAX)")
    parser.add_argument("--epochs", type=int, default=8, help="epochs of the timed runs (the first is left out)")
    parser.add_argument(
        "--learning-epochs", type=int, default=20, help="epochs of the 3-seed learning check (0 skips it)"
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds, each running every variant in turn")
    add_output_args(parser)
    args = parser.parse_args()
    n_images = USERS_IMAGES
    if args.smoke:
        args.size, args.base_filters, args.depth, args.epochs, args.seeds, args.rounds = 32, 4, 2, 2, [0], 1
        args.learning_epochs = min(args.learning_epochs, 2)
        n_images = 24
    backend = keras.backend.backend()
    images, masks = make_microbeads(n_images, args.size, 0)
    train_index, val_index = stratified_split(masks, 0.15, seed=0)
    train_data, val_data = (images[train_index], masks[train_index]), (images[val_index], masks[val_index])
    base = TrainSettings(
        base_filters=args.base_filters,
        depth=args.depth,
        batch_size=args.batch,
        precision=args.precision,
        jit_compile=args.jit or backend == "jax",
        learning_rate=1e-3,
        max_epochs=args.epochs,
        patience=args.epochs,
    )
    steps = len(train_index) // args.batch
    one_call = f"device flips, one call per epoch ({steps} steps)"  # the GPU default
    variants = {
        "host flips, one step per call (before)": {"augment_on": "host", "steps_per_execution": 1},
        "device flips, one step per call": {"augment_on": "device", "steps_per_execution": 1},
        one_call: {"augment_on": "device", "steps_per_execution": steps},
    }
    floor_runs = {"bare": (False, steps), "flips": (True, steps), "flips, one step per call": (True, 1)}
    floors: dict[str, list[float]] = {name: [] for name in floor_runs}
    epochs, validations = {label: [] for label in variants}, {label: [] for label in variants}
    ratios: dict[str, list[float]] = {label: [] for label in variants}
    copies = []
    for round_number in range(args.rounds):
        for name, (flips, steps_per_call) in floor_runs.items():
            floors[name].append(steps_floor(base, *train_data, steps, args.epochs, flips, steps_per_call))
        trained = {}
        for label, changes in variants.items():
            epoch, validation, _, trained[label] = timed_training(base.replace(**changes), train_data, val_data)
            epochs[label].append(epoch)
            validations[label].append(validation)
            ratios[label].append(epoch / floors[own_floor(changes)][-1])
        copies.append(best_weights_copy(trained[one_call]))
        print(
            f"round {round_number + 1}: floors "
            + ", ".join(f"{name} {values[-1] * 1000:.0f} ms" for name, values in floors.items())
            + "; "
            + ", ".join(f"{label} {values[-1] * 1000:.0f} ms" for label, values in epochs.items()),
            flush=True,
        )
    floor = {name: statistics.median(values) for name, values in floors.items()}
    rows = []
    for label, changes in variants.items():
        ratio = statistics.median(ratios[label])
        rows.append(
            [
                label,
                f"{statistics.median(epochs[label]) * 1000:.0f}",
                f"{statistics.median(validations[label]) * 1000:.0f}",
                f"{floor[own_floor(changes)] * 1000:.0f}",
                f"{ratio:.2f}",
                f"{min(ratios[label]):.2f}–{max(ratios[label]):.2f}",
                ok(ratio <= GOAL_RATIO),
            ]
        )
    timing = markdown_table(
        [
            "epoch",
            "real epoch (ms)",
            "of it validation (ms)",
            "its steps floor (ms)",
            "÷ floor",
            "range over rounds",
            "≤ 1.15×",
        ],
        rows,
    )
    per_call = [one / whole for one, whole in zip(floors["flips, one step per call"], floors["flips"], strict=True)]
    copy = statistics.median(copies)
    copy_line = (
        f"Best-weights copy: early stopping (`restore_best_weights`) copies the model's "
        f"{trained[one_call].count_params():,} parameters to the host after each epoch that improves val "
        f"Jaccard, inside that epoch: {copy * 1000:.1f} ms (median over rounds), "
        f"{copy / floor['flips']:.1%} of the steps floor."
    )
    print(copy_line, flush=True)
    body = "\n\n".join(
        [
            f"{backend}, {args.size}² synthetic beads ({len(train_index)} training, {len(val_index)} validation "
            f"images), base {args.base_filters}, depth {args.depth}, batch {args.batch}, {args.precision}, "
            f"jit_compile {str(base.jit_compile).lower()}. Each of {args.rounds} rounds trains every variant for "
            f"{args.epochs} epochs (median of epochs 2–{args.epochs}); the table gives the median over rounds "
            "of each epoch ÷ its floor in the same round. Steps floor: the epoch's "
            f"{steps} training steps on one batch already in memory, one call per epoch, no validation and no "
            f"callbacks; with the flips inside the step {floor['flips'] * 1000:.0f} ms, the bare network's step "
            f"(host flips) {floor['bare'] * 1000:.0f} ms (medians over rounds): the flips cost "
            f"{floor['flips'] / floor['bare'] - 1:.0%} of the bare steps. The same steps with flips at one step "
            f"per call, still without validation or callbacks: {floor['flips, one step per call'] * 1000:.0f} ms, "
            f"{statistics.median(per_call):.2f}× the floor (median over rounds): {backend}'s own cost of a call, "
            "which one call per epoch saves.",
            timing,
            copy_line,
            *learning_check(base, args.learning_epochs, args.seeds, train_data, val_data),
        ]
    )
    publish(args, "A real epoch against its training steps", body, describe_machine())


if __name__ == "__main__":
    sys.exit(main())

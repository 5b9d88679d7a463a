"""Bead-level metrics on a validation-sized set: how long `data.evaluate_objects` takes.

The set is the users' validation split in size: 13 synthetic 512x512 images of ~110 beads each
(`data.make_microbeads`). The prediction is the truth shifted by one pixel with a few single-pixel specks,
so that every bead overlaps its partner partly and some predicted beads match nothing. Timed for binary
masks (labelled into connected components here) and for label images (labels kept), each the median of
`--runs` runs. `--smoke` runs 2 images of 64 px once.

Its share of a trial: one demo-sized trial (`studies/demo.toml`'s data and model: 96 synthetic images of
128 px, base_filters 8, depth 3, batch 8) trains here for `--trial-epochs` epochs, then
`optimize.training.bead_metrics` predicts its validation images and scores them, as every COMPLETE trial
does once; the share is that time over the training time.

    python bench/object_metrics.py --runs 7 --trial-epochs 6
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np
from _common import add_output_args, describe_machine, markdown_table, publish

from data import bead_labels, evaluate_objects, make_microbeads

SPECKS_PER_IMAGE = 20


def predictions(masks: np.ndarray, seed: int) -> np.ndarray:
    """The masks shifted right by one pixel, with single-pixel specks where there was background."""
    rng = np.random.default_rng(seed)
    predicted = np.roll(masks, 1, axis=2)
    for image in predicted:
        rows, cols = rng.integers(0, image.shape[0], (2, SPECKS_PER_IMAGE))
        image[rows, cols] = 1.0
    return predicted


def median_seconds(true_masks: list[np.ndarray], pred_masks: list[np.ndarray], runs: int) -> float:
    """Median wall seconds of one `evaluate_objects` call at IoU 0.5 and 0.75."""
    seconds = []
    for _ in range(runs):
        started = time.perf_counter()
        evaluate_objects(true_masks, pred_masks, (0.5, 0.75))
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds)


def trial_share(epochs: int, n_images: int, size: int) -> tuple[float, float, int]:
    """Seconds of one real training run and of its bead metrics (prediction + matching), and the val images."""
    from data import stratified_split
    from optimize.search.settings import TrainSettings
    from optimize.training.bead_metrics import bead_metrics
    from optimize.training.train import train

    images, masks = make_microbeads(n_images, size, seed=0)
    train_index, val_index = stratified_split(masks, val_fraction=0.15, seed=0)
    settings = TrainSettings(base_filters=8, depth=3, batch_size=8, max_epochs=epochs, patience=epochs)
    result = train(settings, (images[train_index], masks[train_index]), (images[val_index], masks[val_index]))
    beads = bead_metrics(result.model, images[val_index], masks[val_index], settings.micro_batch_size)
    return result.train_seconds, beads.seconds, len(val_index)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7, help="timed runs of each case (default 7)")
    parser.add_argument("--trial-epochs", type=int, default=6, help="epochs of the timed trial (default 6)")
    add_output_args(parser)
    args = parser.parse_args()
    n_images, size, runs = (2, 64, 1) if args.smoke else (13, 512, args.runs)
    machine = describe_machine()
    masks = make_microbeads(n_images, size, seed=0, mean_beads=110)[1][..., 0]
    predicted = predictions(masks, seed=1)
    cases = {
        "binary masks (connected components)": (list(masks), list(predicted)),
        "label images (labels kept)": ([bead_labels(mask) for mask in masks], [bead_labels(p) for p in predicted]),
    }
    beads = np.mean([label.max() for label in cases["label images (labels kept)"][0]])
    summary = evaluate_objects(masks, predicted).summary()
    rows = []
    for name, (true_masks, pred_masks) in cases.items():
        seconds = median_seconds(true_masks, pred_masks, runs)
        rows.append(
            [name, n_images, f"{size}x{size}", f"{beads:.0f}", runs, f"{seconds * 1000:.1f} ms"]
            + [f"{seconds * 1000 / n_images:.2f} ms"]
        )
        print(f"{name}: {seconds * 1000:.1f} ms", flush=True)
    table = markdown_table(
        ["masks", "images", "size", "true beads per image", "runs", "time (median)", "per image"], rows
    )
    scores = ", ".join(f"{name} {value:.3f}" for name, value in summary.items())
    body = f"{table}\n\nScores of the shifted prediction at IoU 0.5 (a check that it matches): {scores}."
    epochs, trial_images, trial_size = (1, 16, 32) if args.smoke else (args.trial_epochs, 96, 128)
    train_seconds, metric_seconds, n_val = trial_share(epochs, trial_images, trial_size)
    share = metric_seconds / train_seconds
    print(f"trial: {train_seconds:.1f} s training, {metric_seconds:.2f} s bead metrics ({100 * share:.1f} %)")
    body += (
        f"\n\nShare of a trial: a {trial_size}² demo-sized trial trained {epochs} epochs in {train_seconds:.1f} s "
        f"here; predicting and scoring its {n_val} validation images took {metric_seconds:.2f} s, "
        f"**{100 * share:.1f} %** of it (once per COMPLETE trial, after its last epoch)."
    )
    title = "Bead-level metrics, `data.evaluate_objects` at IoU 0.5 and 0.75"
    publish(args, title + (" (smoke)" if args.smoke else ""), body, machine)
    return 0


if __name__ == "__main__":
    sys.exit(main())

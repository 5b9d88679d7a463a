"""The users' whole grid trained once per seed at small scale: a table of learning curves that searches replay.

Hyperparameter-optimization research compares search methods on such tables (LCBench, HPOBench,
NAS-Bench-201): every configuration of a fixed grid is trained to full length, every epoch's val Jaccard
is stored, and a search then reads a configuration's curve epoch by epoch instead of training it, so that
pruning, budgets and samplers act as they would live while one replay takes seconds
(`bench/replay.py`).

The grid is the users' 96 configurations: 4 architectures × 4 batch sizes × 6 losses, at one learning
rate. Scale: 86 synthetic 64² bead images split 0.15 (the users' 73 train / 13 val), base_filters 8,
depth 3, learning rate 1e-3, `MAX_EPOCHS` epochs without pruning or early stopping; each seed sets the
weights and the data order. One row per (configuration, seed, epoch) goes to `bench/grid_table.csv`,
written as each run ends, so the build resumes where it stopped and can run in the background:

    nohup python bench/grid_table.py --seeds 0 1 2 > grid_table.log 2>&1 &
    python bench/grid_table.py --smoke --table /tmp/table.csv     # 2 configurations, 2 epochs
"""

from __future__ import annotations

import argparse
import csv
import itertools
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from data import make_microbeads, stratified_split  # noqa: E402
from optimize.search.settings import TrainSettings  # noqa: E402
from optimize.training.train import train  # noqa: E402

ARCHITECTURES = ("unet", "resunet", "attention_unet", "attention_resunet")
BATCH_SIZES = (4, 8, 16, 32)
LOSSES = ("dice", "focal", "tversky", "focal_tversky", "combined", "combined_tversky")
IMAGES, SIZE, VAL_FRACTION = 86, 64, 0.15
BASE_FILTERS, DEPTH, LEARNING_RATE = 8, 3, 1e-3
MAX_EPOCHS = 20
TABLE = Path(__file__).with_name("grid_table.csv")
COLUMNS = ("architecture", "batch_size", "loss", "seed", "epoch", "val_jaccard", "val_loss", "jaccard", "seconds")


def grid() -> list[tuple[str, int, str]]:
    """Every configuration, in the order the users' grid script trains them."""
    return list(itertools.product(ARCHITECTURES, BATCH_SIZES, LOSSES))


def finished_runs(table: Path, epochs: int) -> set[tuple[str, int, str, int]]:
    """The (architecture, batch size, loss, seed) runs whose every epoch is in the table."""
    if not table.exists():
        return set()
    counts: dict[tuple[str, int, str, int], int] = {}
    with table.open(newline="") as file:
        for row in csv.DictReader(file):
            key = (row["architecture"], int(row["batch_size"]), row["loss"], int(row["seed"]))
            counts[key] = counts.get(key, 0) + 1
    return {key for key, count in counts.items() if count >= epochs}


def train_curve(
    config: tuple[str, int, str], seed: int, data: tuple, epochs: int, run_eagerly: bool = False
) -> list[dict]:
    """One run of `config` to `epochs` epochs (no early stopping): its rows of the table.

    `run_eagerly` is for the smoke run's tiny models, whose graphs cost more to trace than their steps."""
    architecture, batch_size, loss = config
    settings = TrainSettings(
        architecture=architecture,
        batch_size=batch_size,
        loss=loss,
        base_filters=BASE_FILTERS,
        depth=DEPTH,
        learning_rate=LEARNING_RATE,
        max_epochs=epochs,
        patience=epochs,
        seed=seed,
        run_eagerly=run_eagerly,
    )
    result = train(settings, *data)
    return [
        {
            "architecture": architecture,
            "batch_size": batch_size,
            "loss": loss,
            "seed": seed,
            "epoch": int(row["epoch"]),
            "val_jaccard": round(float(row["val_jaccard"]), 6),
            "val_loss": round(float(row["val_loss"]), 6),
            "jaccard": round(float(row["jaccard"]), 6),
            "seconds": round(float(row["seconds"]), 3),
        }
        for row in result.history
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="training seeds (default 0 1 2)")
    parser.add_argument("--table", type=Path, default=TABLE, help=f"the CSV to extend (default {TABLE.name})")
    parser.add_argument("--smoke", action="store_true", help="2 configurations of 2 epochs on 16 images of 32 px")
    args = parser.parse_args()
    configs, epochs = (grid()[:2], 2) if args.smoke else (grid(), MAX_EPOCHS)
    n_images, size = (16, 32) if args.smoke else (IMAGES, SIZE)
    images, masks = make_microbeads(n_images, size, seed=0)
    train_index, val_index = stratified_split(masks, val_fraction=VAL_FRACTION, seed=0)
    data = ((images[train_index], masks[train_index]), (images[val_index], masks[val_index]))
    done = finished_runs(args.table, epochs)
    todo = [(config, seed) for seed in args.seeds for config in configs if (*config, seed) not in done]
    print(f"{len(done)} runs in {args.table}; {len(todo)} to train ({len(configs)} configurations, seeds {args.seeds})")
    new_file = not args.table.exists()
    started = time.perf_counter()
    for index, (config, seed) in enumerate(todo, start=1):
        rows = train_curve(config, seed, data, epochs, run_eagerly=args.smoke)
        with args.table.open("a", newline="") as file:
            writer = csv.DictWriter(file, fieldnames=COLUMNS)
            if new_file:
                writer.writeheader()
                new_file = False
            writer.writerows(rows)
        elapsed = time.perf_counter() - started
        best = max(row["val_jaccard"] for row in rows)
        print(
            f"[{index}/{len(todo)}] {config} seed {seed}: best val_jaccard {best:.4f}; "
            f"{elapsed / 60:.1f} min, ~{elapsed / index * (len(todo) - index) / 60:.0f} min left",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Per-epoch training history, recorded during `fit`.

Keras' own `History` is lost when a callback (a pruner, say) raises inside `fit`, so the trainer
places this recorder first and the caller keeps a reference to it. Its rows have the columns a
trial stores (`optimize.results.record.HISTORY_COLUMNS`).
"""

from __future__ import annotations

import math
import time

import keras

from optimize.results.record import HISTORY_COLUMNS


class EpochHistory(keras.callbacks.Callback):
    """Records one row per finished epoch: the columns of `HISTORY_COLUMNS` (epoch counts from 1)."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[dict[str, float]] = []
        self._epoch_start = time.perf_counter()

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._epoch_start = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = logs or {}
        row = {"epoch": epoch + 1}
        for key in HISTORY_COLUMNS[1:5]:
            row[key] = float(logs[key]) if key in logs else math.nan
        row["lr"] = current_learning_rate(self.model)
        row["seconds"] = time.perf_counter() - self._epoch_start
        self.rows.append(row)

    def best(self, key: str = "val_jaccard") -> tuple[int, float]:
        """(epoch, value) of the highest finite `key` so far; (0, nan) before any."""
        top = best_row(self.rows, key)
        return (0, math.nan) if top is None else (int(top["epoch"]), top[key])


def best_row(rows: list[dict[str, float]], key: str = "val_jaccard") -> dict[str, float] | None:
    """The row with the highest finite `key` (the first of equals); None when no value is finite."""
    finite = [row for row in rows if math.isfinite(row[key])]
    return max(finite, key=lambda row: row[key]) if finite else None


def current_learning_rate(model: keras.Model) -> float:
    """The optimizer's learning rate now, whether constant, scheduled or reduced on plateau."""
    return float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))

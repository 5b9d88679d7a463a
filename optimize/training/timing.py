"""Where a trial's seconds go: compiling, training steps, validation, and the host work between them.

`FitTiming` is a Keras callback that splits the epochs of `model.fit` by its batch and validation hooks:

- `compile`: the first training batch of each `fit` (tracing and compiling the training step, and that
  step itself) and the first validation batch (compiling the test step, and that batch);
- `train_steps`: every other training batch, from `on_train_batch_begin` to `on_train_batch_end`;
- `validation`: the rest of each validation pass (`on_test_begin` to `on_test_end`);
- `host`: the rest of each epoch: the other callbacks' epoch work, Keras' own bookkeeping.

A batch's window ends once its loss is back on the host: Keras reads each batch's logs as Python floats
whenever a callback overrides `on_train_batch_end` and is not `async_safe` (this one, and the worker's
progress and stop callbacks, all do; TensorFlow always does), so steps do not overlap across windows.
The batches come from the device (`data.device_batches`: `tf.data` under TensorFlow, arrays already on
the device under JAX) or, with `augment_on = "host"`, from NumPy (`TrainingBatches`), which under JAX
are cut and flipped inside the window. With `steps_per_execution > 1` (on a GPU by default, a whole
epoch) a window holds that many steps, and `compile` holds the whole first window: on a GPU the first
epoch's steps count as compiling, which is a fraction of a second against a compile of a minute.

`trial_time_split` turns these, the trial's wall time, its database seconds and its bead-metric seconds
into the trial's system attr `optimize:time_split` (`optimize.results.record.TIME_SPLIT_PARTS`), whose parts add up
to the trial's wall time: there `host` is everything else (model building, suggesting parameters,
saving a best model, and the epochs' host work). `compiled_program` names the program a trial compiles.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import keras

from optimize.results import record
from optimize.search.settings import TrainSettings

SPLIT_DECIMALS = 3


class FitTiming(keras.callbacks.Callback):
    """Seconds of `fit` in compiling, training steps, validation and host work (see the module's docstring).

    Accumulates over every `fit` it is passed to, so an out-of-memory retry's compile and epochs count
    too. An epoch that a callback ended by raising (the pruner, a stop signal) is left out of `host`.
    """

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        super().__init__()
        self.clock = clock
        self.compile = 0.0
        self.train_steps = 0.0
        self.validation = 0.0
        self.epochs = 0.0
        """Seconds inside finished epochs, `on_epoch_begin` to `on_epoch_end`: all four parts."""
        self.inside_epochs = 0.0
        """Of `epochs`, the seconds in the three measured parts (the rest is `host`)."""
        self._first_train_batch = True
        self._first_test_batch = True
        self._epoch_started: float | None = None
        self._epoch_measured = 0.0
        self._batch_started = 0.0
        self._test_started = 0.0
        self._test_compile = 0.0

    @property
    def host(self) -> float:
        """Seconds of the finished epochs outside batches and validation."""
        return max(self.epochs - self.inside_epochs, 0.0)

    def seconds(self) -> dict[str, float]:
        """compile, train_steps, validation and host, in seconds; they add up to `epochs` once every epoch ended."""
        return {
            record.SPLIT_COMPILE: self.compile,
            record.SPLIT_TRAIN_STEPS: self.train_steps,
            record.SPLIT_VALIDATION: self.validation,
            record.SPLIT_HOST: self.host,
        }

    def on_train_begin(self, logs: dict | None = None) -> None:
        # Each fit builds a new model, whose steps are compiled again.
        self._first_train_batch = self._first_test_batch = True

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._epoch_started = self.clock()
        self._epoch_measured = 0.0

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if self._epoch_started is None:
            return
        self.epochs += self.clock() - self._epoch_started
        self.inside_epochs += self._epoch_measured
        self._epoch_started = None

    def on_train_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        self._batch_started = self.clock()

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        elapsed = self.clock() - self._batch_started
        self._epoch_measured += elapsed
        if self._first_train_batch:
            self._first_train_batch = False
            self.compile += elapsed
        else:
            self.train_steps += elapsed

    def on_test_begin(self, logs: dict | None = None) -> None:
        self._test_started = self.clock()
        self._test_compile = 0.0

    def on_test_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        self._batch_started = self.clock()

    def on_test_batch_end(self, batch: int, logs: dict | None = None) -> None:
        if self._first_test_batch:
            self._first_test_batch = False
            self._test_compile = self.clock() - self._batch_started
            self.compile += self._test_compile

    def on_test_end(self, logs: dict | None = None) -> None:
        elapsed = self.clock() - self._test_started
        self.validation += elapsed - self._test_compile
        self._epoch_measured += elapsed


def trial_time_split(
    fit: FitTiming, trial_seconds: float, *, database: float | None, bead_metrics: float
) -> dict[str, float | None]:
    """The trial's time split (system attr `optimize:time_split`): seconds per part, `host` the rest of the trial.

    `database` is None where the storage's calls are not timed (a journal file); they are then in `host`.
    """
    measured = {
        record.SPLIT_COMPILE: fit.compile,
        record.SPLIT_TRAIN_STEPS: fit.train_steps,
        record.SPLIT_VALIDATION: fit.validation,
        record.SPLIT_BEAD_METRICS: bead_metrics,
        record.SPLIT_DATABASE: database,
    }
    host = trial_seconds - sum(seconds for seconds in measured.values() if seconds is not None)
    split = {**measured, record.SPLIT_HOST: max(host, 0.0)}  # in the order of TIME_SPLIT_PARTS
    return {part: None if split[part] is None else round(split[part], SPLIT_DECIMALS) for part in split}


def compiled_program(settings: TrainSettings, image_shape: tuple[int, ...]) -> str:
    """The trial's user attr `program`: what makes trials compile the same convolutions.

    Architecture, width and depth, image shape, micro-batch, precision and XLA: trials that agree on these
    share the convolutions XLA compiles and autotunes (the compile cache keeps them); loss, dropout and
    learning-rate schedule change the rest of the step.
    """
    shape = "x".join(str(int(size)) for size in image_shape)
    compiler = "jit" if settings.jit_compile else "no jit"
    if settings.run_eagerly:
        compiler = "eager"
    return (
        f"{settings.architecture} base {settings.base_filters} depth {settings.depth}, {shape}, "
        f"micro-batch {settings.micro_batch_size}, {settings.precision}, {compiler}"
    )

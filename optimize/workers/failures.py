"""Errors inside a trial: a bug in our own code must be seen, and must not burn the study's budget.

`study.optimize(catch=(Exception,))` keeps a worker going after one failed trial, and Optuna then
logs a single line, hidden unless `--verbose`. So the first time an error appears, its full
traceback is printed in the worker's output (the trial stores the one-line reason); the same error
again is named in one line. When `limit` trials in a row fail with the same exception type, the
fault is in the code or the setup rather than in a configuration, and the worker stops
(`[recovery] stop_after_repeated_errors`).
"""

from __future__ import annotations

import traceback
from typing import TextIO

import optuna
from optuna.trial import FrozenTrial

EXIT_REPEATED_ERRORS = 70
"""EX_SOFTWARE: a job script can tell "our code failed" from a lost database (75) or a stop signal (143)."""


class RepeatedErrors:
    """`on_error` of the objective and a `study.optimize` callback: prints tracebacks, counts a streak, stops it."""

    def __init__(self, limit: int, stream: TextIO) -> None:
        self.limit = limit
        self.stream = stream
        self.shown: dict[tuple, int] = {}
        self.streak: list[int] = []
        self.error_type = ""
        self.stop_message: str | None = None

    def on_error(self, trial: optuna.Trial, error: Exception) -> None:
        """Show the error (in full the first time), extend or restart the streak, stop the study at `limit`."""
        self.show(trial.number, error)
        name = type(error).__name__
        self.streak = [*self.streak, trial.number] if name == self.error_type else [trial.number]
        self.error_type = name
        if len(self.streak) >= self.limit:
            trials = ", ".join(map(str, self.streak))
            self.stop_message = (
                f"stopped: {len(self.streak)} trials in a row ({trials}) failed with {name}, which points to a bug "
                f"or a broken setup rather than a bad configuration; see the traceback above, fix it and run again "
                f"([recovery] stop_after_repeated_errors = {self.limit})"
            )
            trial.study.stop()

    def show(self, number: int, error: Exception) -> None:
        """The full traceback for an error not seen before (same type raised at the same lines), else one line."""
        place = tuple((frame.filename, frame.lineno) for frame in traceback.extract_tb(error.__traceback__))
        first = self.shown.setdefault((type(error), place), number)
        if first == number:
            text = "".join(traceback.format_exception(error)).rstrip()
            print(
                f"trial {number} failed with an error (stored on the trial as reason 'error'):\n{text}",
                file=self.stream,
            )
        else:
            print(
                f"trial {number} failed with the same error as trial {first}: {type(error).__name__}: {error}",
                file=self.stream,
            )
        self.stream.flush()

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        """After each trial: one that did not fail with an error ends the streak."""
        if not self.streak or trial.number != self.streak[-1]:
            self.streak = []
            self.error_type = ""

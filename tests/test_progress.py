"""What a person sees while a long epoch runs: its batches, speed and the time left, on one line."""

from __future__ import annotations

import io
import re

from optimize.results.formatting import format_duration
from optimize.workers.progress import EpochProgress
from tests.conftest import run_cli, write_tiny_study


def test_a_slow_epoch_shows_its_batches_in_a_log(tmp_path):
    studies = tmp_path / "studies"
    write_tiny_study(studies, max_trials=1, max_epochs=2)
    result = run_cli(
        "run",
        "--study",
        "tiny",
        "--storage",
        f"sqlite:///{tmp_path / 'tiny.db'}",
        env={"OPTIMIZE_STUDIES_DIR": str(studies), "OPTIMIZE_TEST_SLOW_STEP": "train:4"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    batch_line = re.compile(
        r"^  trial 0 epoch 1/2  batch 2/2  [\d.]+ img/s  epoch left \d+ s, trial left at most \d+ s$", re.MULTILINE
    )
    assert batch_line.search(result.stdout), result.stdout
    assert "\r" not in result.stdout and "\x1b" not in result.stdout


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def started_epoch(terminal: Terminal) -> EpochProgress:
    progress = EpochProgress(trial_number=3, max_epochs=10, stream=terminal, images_per_step=8)
    progress.set_params({"steps": 4, "epochs": 10, "verbose": 0})
    progress.on_epoch_begin(0)
    return progress


def test_a_terminal_gets_one_rewritten_line():
    terminal = Terminal()
    progress = started_epoch(terminal)
    progress.on_train_batch_end(0)  # within IN_EPOCH_AFTER of the epoch's start: not shown
    progress.epoch_started -= 7  # as if the first batch had taken two seconds and the second five
    progress.first_batch_ended -= 5
    progress.on_train_batch_end(1)
    progress.on_train_batch_end(2)  # within a second of the last line: not shown
    shown = terminal.getvalue()
    assert shown.startswith("\r  trial 3 epoch 1/10  batch 2/4  1.6 img/s  epoch left 10 s, trial left at most 3 min")
    assert shown.count("\r") == 1 and shown.endswith("\x1b[K")


def test_a_first_batch_that_compiled_gives_no_speed():
    terminal = Terminal()
    progress = started_epoch(terminal)
    progress.epoch_started -= 5  # the first batch took five seconds, most of them compiling
    progress.on_train_batch_end(0)
    assert terminal.getvalue() == "\r  trial 3 epoch 1/10  batch 1/4\x1b[K"


def test_durations_read_as_a_person_says_them():
    assert [format_duration(s) for s in (4, 89, 600, 5399, 9000)] == ["4 s", "89 s", "10 min", "90 min", "2.5 h"]

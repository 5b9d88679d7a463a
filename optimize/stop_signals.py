"""SIGINT and SIGTERM before trials run (Ctrl-C, a job's walltime, `kill`): the command ends with one line.

Python raises a signal's exception wherever the main thread happens to be, and a library may be there:
a `__del__` that runs during an import reports the exception as "ignored" and goes on, a C extension's
import turns it into "ImportError: initialization failed", a broad `except` drops it. So the handlers
below also record the signal; `raise_if_stopped` raises it again at the points where the command checks
(after Keras loads, before trials start, when the command ends), and `stop_behind` finds it behind the
error a library made of it. While trials run, `optimize.workers.interrupt` installs handlers of its own.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Iterator


class Terminated(KeyboardInterrupt):
    """SIGTERM, unwound like Ctrl-C."""

    signal_number = signal.SIGTERM


_received: list[int] = []
"""The stop signals received within `stop_signals_unwind`, oldest first."""


def signal_exit_code(number: int) -> int:
    """The exit code of a command that signal `number` ended: 128 + the number, as a shell reports it."""
    return 128 + number


def stop_exception(number: int) -> KeyboardInterrupt:
    """The exception that stands for stop signal `number`."""
    return Terminated() if number == signal.SIGTERM else KeyboardInterrupt()


@contextlib.contextmanager
def stop_signals_unwind() -> Iterator[None]:
    """Within: SIGINT and SIGTERM raise `KeyboardInterrupt` and `Terminated` and are recorded, unless this
    process ignores or already handles them (a shell's background job ignores SIGINT)."""
    defaults = {signal.SIGINT: signal.default_int_handler, signal.SIGTERM: signal.SIG_DFL}
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    ours = [number for number, default in defaults.items() if signal.getsignal(number) == default]

    def stop(number: int, frame: object) -> None:
        _received.append(number)
        raise stop_exception(number)

    def unraisable(hook_args: sys.UnraisableHookArgs) -> None:
        if not isinstance(hook_args.exc_value, KeyboardInterrupt):
            previous_hook(hook_args)

    _received.clear()
    previous = {number: signal.signal(number, stop) for number in ours}
    previous_hook, sys.unraisablehook = sys.unraisablehook, unraisable
    try:
        yield
    finally:
        _received.clear()
        sys.unraisablehook = previous_hook
        for number, handler in previous.items():
            signal.signal(number, handler)


def received_stop() -> KeyboardInterrupt | None:
    """The first stop signal received within `stop_signals_unwind`, as its exception; None if none was."""
    return stop_exception(_received[0]) if _received else None


def raise_if_stopped() -> None:
    """Raise the first stop signal received within `stop_signals_unwind`, if one was."""
    if (stop := received_stop()) is not None:
        raise stop


def stop_behind(error: BaseException) -> KeyboardInterrupt | None:
    """The stop signal behind `error`: one in its chain of causes, else one received meanwhile; None if neither.

    Keras reports an interrupted `import optree` as "you need to have `optree` installed", and a
    pybind11 module as "initialization failed".
    """
    seen: set[int] = set()
    cause: BaseException | None = error
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, KeyboardInterrupt):
            return cause
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return received_stop()

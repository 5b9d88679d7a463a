"""A stop signal that a library swallows or disguises before trials run still stops the command.

CI caught `optimize run` finishing its trial with exit 0 after a SIGTERM: the signal's exception had
been raised inside library code that dropped it. These tests make libraries do that on purpose.
"""

from __future__ import annotations

import os
import signal
import sys
import time

import pytest

from optimize.stop_signals import Terminated, raise_if_stopped, stop_behind, stop_signals_unwind


def signal_self(number: int) -> None:
    """Send `number` to this process and wait for its handler, which runs (and raises) during the sleep."""
    os.kill(os.getpid(), number)
    time.sleep(2)
    raise AssertionError(f"the handler of {signal.Signals(number).name} did not raise")


class SignalledWhileCollected:
    """A library object whose `__del__` is running when the signal arrives: Python reports the exception
    as "ignored" and carries on."""

    def __init__(self, number: int) -> None:
        self.number = number

    def __del__(self) -> None:
        signal_self(self.number)


@pytest.mark.parametrize("number", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_a_library_swallowed_is_raised_again_at_the_next_check(number):
    with stop_signals_unwind():
        try:
            signal_self(number)
        except BaseException:  # a library's broad except
            pass
        with pytest.raises(KeyboardInterrupt) as raised:
            raise_if_stopped()
    assert (number == signal.SIGTERM) == isinstance(raised.value, Terminated)


class BrokenWhileCollected:
    def __del__(self) -> None:
        raise ValueError("a library's own bug")


def test_a_signal_during_a_del_is_not_reported_as_ignored_and_is_raised_again(monkeypatch):
    reported: list[BaseException] = []
    monkeypatch.setattr(sys, "unraisablehook", lambda hook_args: reported.append(hook_args.exc_value))
    with stop_signals_unwind():
        SignalledWhileCollected(signal.SIGTERM)  # collected at once
        BrokenWhileCollected()
        with pytest.raises(Terminated):
            raise_if_stopped()
    assert [type(error) for error in reported] == [ValueError], "only the library's bug is reported"


def test_an_error_made_of_a_signal_leads_back_to_it_and_other_errors_do_not():
    with stop_signals_unwind():
        assert stop_behind(ValueError("a bug of ours")) is None
        try:
            try:
                signal_self(signal.SIGTERM)
            except BaseException as stop:
                raise ImportError("initialization failed") from stop  # what pybind11 makes of it
        except ImportError as error:
            assert isinstance(stop_behind(error), Terminated)
        assert isinstance(stop_behind(ValueError("after the signal, any error is the stop")), Terminated)


def test_outside_the_block_handlers_and_records_are_as_before():
    before = {number: signal.getsignal(number) for number in (signal.SIGINT, signal.SIGTERM)}
    with stop_signals_unwind():
        try:
            signal_self(signal.SIGTERM)
        except Terminated:
            pass
    assert {number: signal.getsignal(number) for number in before} == before
    raise_if_stopped()
    assert stop_behind(ValueError("unrelated")) is None


def test_a_signal_the_process_ignores_stays_ignored():
    """A shell's background job ignores SIGINT; the block must not make Ctrl-C in another window reach it."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with stop_signals_unwind():
            assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.1)
            raise_if_stopped()
    finally:
        signal.signal(signal.SIGINT, previous)

"""`pytest --cpu-durations=N`: the N tests that cost the most CPU seconds, their subprocesses included.

The suite is CPU-bound on CI's 2 cores, so wall-clock `--durations` under `-n 2` says little about what a
test costs: a test that waits for workers in other processes looks long and costs little, and a bench
smoke started beside nine others looks slow because of them. Each phase's CPU time is its process's own
plus that of the children it waited for (`RUSAGE_CHILDREN`, which includes their own waited-for children).
It works with xdist: each test's teardown report carries its seconds to the controller as a user property.
"""

from __future__ import annotations

import resource
from collections import defaultdict

import pytest

PROPERTY = "cpu_seconds"
_started = pytest.StashKey[float]()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--cpu-durations",
        type=int,
        default=None,
        metavar="N",
        help="show the N tests with the most CPU seconds (their own and their subprocesses'), 0 for all",
    )


def cpu_seconds() -> float:
    """User and system seconds of this process and of the children it has waited for."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None):
    item.stash[_started] = cpu_seconds()
    yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """The teardown report carries the test's CPU seconds, setup to teardown. (Every phase's report shares
    the item's `user_properties` list, so one entry per test, not one per phase.)"""
    report = (yield).get_result()
    if call.when == "teardown" and item.config.getoption("cpu_durations") is not None:
        report.user_properties.append((PROPERTY, cpu_seconds() - item.stash[_started]))


def pytest_terminal_summary(terminalreporter, config: pytest.Config) -> None:
    count = config.getoption("cpu_durations")
    if count is None:
        return
    per_test: dict[str, float] = defaultdict(float)
    for reports in terminalreporter.stats.values():
        for report in reports:
            for name, value in getattr(report, "user_properties", ()):
                if name == PROPERTY:
                    per_test[report.nodeid] = value
    ranked = sorted(per_test.items(), key=lambda item: -item[1])
    total = sum(per_test.values())
    terminalreporter.write_sep("=", f"most CPU seconds (own and subprocesses'), {total:.0f} s in all")
    for nodeid, seconds in ranked[: count or None]:
        terminalreporter.write_line(f"{seconds:8.1f}s  {nodeid}")

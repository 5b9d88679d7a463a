"""Errors a person can act on: the command line prints them as one line and exits non-zero."""

from __future__ import annotations


class UserError(Exception):
    """A problem with the user's input or environment, not a bug; `exit_code` is what the CLI returns."""

    exit_code = 1


class ConfigError(UserError):
    """A study configuration file that cannot be used as written."""


class StorageError(UserError):
    """A study database that cannot be reached or used."""

    exit_code = 2


class UsageError(UserError):
    """A command-line flag that cannot be used as given, found after parsing (exit 2, as argparse's own)."""

    exit_code = 2


class DatabaseUnreachable(StorageError):
    """The study database stayed unreachable longer than a worker waits (`[recovery] reconnect_timeout`).

    Exit 75 (EX_TEMPFAIL: try again later) tells a job script that the database, not the worker or its
    input, failed; the trial the worker was running is retried by a worker that can reach the database.
    """

    exit_code = 75

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

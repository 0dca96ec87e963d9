"""Exceptions that the CLI maps to exit codes: ``UsageError`` -> 2, ``ZooError`` -> 1."""

from __future__ import annotations


class ZooError(Exception):
    """A failure the user can act on; the message says what went wrong and what to do."""

    exit_code = 1


class UsageError(ZooError):
    """Bad command line, configuration or plugin name (exit code 2)."""

    exit_code = 2


class ConfigError(UsageError):
    """A configuration file or ``-o`` override that does not fit the typed config."""


class PluginError(UsageError):
    """Unknown or duplicate plugin name, or (in strict mode) a plugin that failed to load."""


class DataError(ZooError):
    """Bad input data: the message names the file, the record index and the key."""

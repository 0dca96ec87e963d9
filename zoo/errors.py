"""Exceptions that the CLI maps to exit codes: ``UsageError`` -> 2, ``ZooError`` -> 1."""

from __future__ import annotations


def _rebuild(cls: type, args: tuple, state: dict) -> BaseException:
    error = cls.__new__(cls, *args)
    error.args = args
    error.__dict__.update(state)
    return error


class ZooError(Exception):
    """A failure the user can act on; the message says what went wrong and what to do."""

    exit_code = 1

    def __reduce__(self) -> tuple:
        # picklable whatever a subclass's __init__ takes: a worker process's error reaches the parent intact
        return (_rebuild, (type(self), self.args, dict(self.__dict__)))


class UsageError(ZooError):
    """Bad command line, configuration or plugin name (exit code 2)."""

    exit_code = 2


class ConfigError(UsageError):
    """A configuration file or ``-o`` override that does not fit the typed config."""


class PluginError(UsageError):
    """Unknown or duplicate plugin name, or (in strict mode) a plugin that failed to load."""


class DataError(ZooError):
    """Bad input data: the message names the file, the record index and the key."""

"""The engine's progress line is the project's one renderer, :class:`zoo.progress.Progress`."""

from zoo.progress import Progress

__all__ = ["Progress"]

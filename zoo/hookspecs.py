"""The hooks a yt8m-zoo plugin can implement.

A plugin is a module (or object) listed under the ``yt8m_zoo`` entry-point group. Each hook receives a
``register`` callback; call it once per class you provide. Registration is lazy: plugins are loaded the
first time a registry is needed, once per process, and nothing registers itself as an import side effect.
"""

from __future__ import annotations

from collections.abc import Callable

import pluggy

PROJECT = "yt8m_zoo"
ENTRY_POINT_GROUP = "yt8m_zoo"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def zoo_register_models(register: Callable[[type], None]) -> None:
    """Register model classes: ``register(MyModel)``.

    A model is a ``paddle.nn.Layer`` with a class attribute ``name`` (str), a class attribute ``Config``
    (a dataclass whose fields have defaults) and ``__init__(self, config, spec)`` where ``spec`` is the
    :class:`zoo.DatasetSpec` (num_classes, features, max_frames). ``forward(batch)`` takes a dict of tensors
    (one ``[B, T, D]`` float32 tensor per feature name, ``mask`` ``[B, T]`` float32, ``num_frames`` ``[B]``
    int64) and returns logits ``[B, num_classes]``.
    """


@hookspec
def zoo_register_readers(register: Callable[[type], None]) -> None:
    """Register reader classes: ``register(MyReader)``.

    A reader has ``name``, ``Config`` (a dataclass with at least ``paths: list[str]``) and
    ``__init__(self, config, spec)``. ``sources()`` lists the files it will read, ``read(source)`` yields one
    dict per video from one file, and iterating the reader yields every video of every source.
    """


@hookspec
def zoo_register_metrics(register: Callable[[type], None]) -> None:
    """Register metric classes: ``register(MyMetric)``.

    A metric has ``name``, ``Config`` and ``__init__(self, config, spec)``; ``update(scores, labels, loss=None)``
    takes numpy arrays ``[B, num_classes]`` per batch and ``compute()`` returns a dict of floats.
    """


@hookspec
def zoo_register_commands(register: Callable[[type], None]) -> None:
    """Register ``zoo`` sub-commands: ``register(MyCommand)``.

    A command class has ``name``, ``help``, ``add_arguments(parser)`` (argparse) and ``run(args) -> int``.
    """

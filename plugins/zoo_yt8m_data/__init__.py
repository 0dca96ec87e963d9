"""YouTube-8M data for yt8m-zoo: TFRecord readers without TensorFlow, sample data, download, pack, inspect.

Registers the readers ``yt8m-frame``, ``yt8m-video``, ``yt8m-segment`` and ``paddlevideo-pkl`` and the
``zoo data`` command (synth, download, pack, inspect). Nothing is imported until a hook is called.
"""

from __future__ import annotations

from zoo import hookimpl


@hookimpl
def zoo_register_readers(register) -> None:
    from zoo_yt8m_data.readers import READERS

    for reader in READERS:
        register(reader)


@hookimpl
def zoo_register_commands(register) -> None:
    from zoo_yt8m_data.commands import DataCommand

    register(DataCommand)

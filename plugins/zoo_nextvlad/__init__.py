"""NeXtVLAD (Lin et al. 2018) as a yt8m-zoo model plugin: the PaddleVideo 1.x recipe, layer by layer.

The model class lives in :mod:`zoo_nextvlad.model`; :mod:`zoo_nextvlad.paddlevideo` maps PaddleVideo 1.x
``NEXTVLAD`` weights onto it. Nothing is imported (and so paddle is not loaded) until the hook runs.
"""

from __future__ import annotations

from collections.abc import Callable

from zoo import hookimpl


@hookimpl
def zoo_register_models(register: Callable[[type], None]) -> None:
    from zoo_nextvlad.model import NeXtVLAD

    register(NeXtVLAD)

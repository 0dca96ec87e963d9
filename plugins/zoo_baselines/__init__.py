"""Frame-aggregation baselines for yt8m-zoo: pooling, DBoF, NetVLAD/NetRVLAD, LSTM and attention models.

Packaged like a third party's plugin: it registers its models through the ``yt8m_zoo`` entry point and
imports only the public zoo API. The model modules (and paddle) load when a model registry is first needed.
Documentation: docs/baselines.md.
"""

from __future__ import annotations

from collections.abc import Callable

from zoo import hookimpl


@hookimpl
def zoo_register_models(register: Callable[[type], None]) -> None:
    from zoo_baselines.attention import AttentionCluster, AttentionLSTM
    from zoo_baselines.dbof import DBoF
    from zoo_baselines.lstm import LSTMModel
    from zoo_baselines.netvlad import NetRVLAD, NetVLAD
    from zoo_baselines.pooling import MaxPool, MeanMaxPool, MeanPool

    for model in (
        MeanPool,
        MaxPool,
        MeanMaxPool,
        DBoF,
        NetVLAD,
        NetRVLAD,
        LSTMModel,
        AttentionCluster,
        AttentionLSTM,
    ):
        register(model)

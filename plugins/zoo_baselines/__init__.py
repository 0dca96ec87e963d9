"""Frame-aggregation baselines for yt8m-zoo: pooling, DBoF, NetVLAD/NetRVLAD, LSTM and attention models.

Packaged like a third party's plugin: it registers its models through the ``yt8m_zoo`` entry point, by
path, so the model modules (and paddle) load only when a model is built. Documentation: docs/baselines.md.
"""

from __future__ import annotations

from zoo import hookimpl

MODELS = {
    "mean-pool": ("pooling:MeanPool", "Mean of the frame features over real frames + logistic classifier."),
    "max-pool": ("pooling:MaxPool", "Element-wise max of the frame features over real frames + logistic."),
    "mean-max-pool": ("pooling:MeanMaxPool", "Mean and max over real frames, concatenated + logistic."),
    "dbof": (
        "dbof:DBoF",
        "Deep Bag of Frames: cluster projection, max pooling over real frames, hidden, MoE.",
    ),
    "netvlad": (
        "netvlad:NetVLAD",
        "WILLOW gated NetVLAD: VLAD per modality, hidden FC, context gating, MoE.",
    ),
    "netrvlad": ("netvlad:NetRVLAD", 'WILLOW gated NetRVLAD ("lightVLAD"): NetVLAD without cluster centres.'),
    "lstm": ("lstm:LSTMModel", "Stacked LSTM; the top layer's state at each video's last real frame -> MoE."),
    "attention-cluster": (
        "attention:AttentionCluster",
        "Shifting attention clusters per modality -> FC -> logistic.",
    ),
    "attention-lstm": (
        "attention:AttentionLSTM",
        "Bidirectional LSTM + attention pooling per modality -> logistic.",
    ),
}


@hookimpl
def zoo_register_models(register) -> None:
    for name, (target, summary) in MODELS.items():
        register(f"{__name__}.{target}", name=name, summary=summary)

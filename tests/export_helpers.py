"""What test_export.py and test_onnx.py share: tiny model configurations, padded batches, trained weights.

Both export every registered model and compare the exported predictions with the dygraph model's, so both
build the models, batches and weights the same way.
"""

from __future__ import annotations

from pathlib import Path

from zoo.config import load_config
from zoo.contracts import DatasetSpec
from zoo.testing import model_batch

FEATURES = {"rgb": 16, "audio": 8}
MAX_FRAMES = 12
TINY = {  # small options for the built-in models; other (third-party) models use their defaults
    "nextvlad": {"cluster_size": 4, "groups": 2, "hidden_size": 16, "gating_reduction": 4},
    "mix-nextvlad": {"cluster_size": 4, "groups": 2, "hidden_size": 16, "gating_reduction": 4},
    "dbof": {"cluster_size": 16, "hidden_size": 8},
    "netvlad": {"cluster_sizes": {"rgb": 4, "audio": 2}, "hidden_size": 8},
    "netrvlad": {"cluster_sizes": {"rgb": 4, "audio": 2}, "hidden_size": 8},
    "lstm": {"lstm_size": 8, "lstm_layers": 2},
    "attention-cluster": {"cluster_num": 3, "hidden_sizes": [16, 8]},
    "attention-lstm": {"embedding_size": 6, "lstm_size": 5, "hidden_sizes": [16, 8]},
}


def tiny_config(name: str, features: dict[str, int] = FEATURES, **extra):
    raw = {
        "dataset": {"preset": "yt8m", "num_classes": 11, "features": features, "max_frames": MAX_FRAMES},
        "model": {"name": name, **TINY.get(name, {})},
        **extra,
    }
    return load_config(raw=raw, source="test")


def make_batch(lengths, features=FEATURES, seed=1):
    """A numpy batch as the pipeline yields it (zoo.testing.model_batch, zero padding), with video ids."""
    batch = model_batch(
        DatasetSpec(num_classes=11, features=features, max_frames=MAX_FRAMES), lengths, seed=seed
    )
    del batch["labels"]  # what a predictor is given
    return {**batch, "ids": [f"v{i}" for i in range(len(lengths))]}


def trained_weights(cfg, path: Path, seed: int = 0) -> Path:
    """Weights as ``zoo train`` writes them, with BatchNorm statistics moved off their initial 0 / 1."""
    from zoo.engine.runs.checkpoint import save_weights
    from zoo.testing import trained_model

    save_weights(path, trained_model(cfg, seed))
    return path

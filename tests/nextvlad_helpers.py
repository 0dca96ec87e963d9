"""What test_nextvlad.py and test_mix_nextvlad.py share: a small dataset and model size, contract batches."""

from __future__ import annotations

from zoo import DatasetSpec, build_model
from zoo.testing import model_batch

SPEC = DatasetSpec(num_classes=9, features={"rgb": 16, "audio": 8}, max_frames=20)
SMALL = {"cluster_size": 6, "groups": 4, "expansion": 2, "hidden_size": 24, "gating_reduction": 4}


def small_model(paddle, name: str, seed: int = 0, **options):
    """Model ``name`` ("nextvlad" or "mix-nextvlad") in the SMALL size, ``options`` overriding it."""
    paddle.seed(seed)
    return build_model(name, spec=SPEC, **{**SMALL, **options})


def make_batch(paddle, lengths: list[int], seed: int = 0, pad_to: int | None = None, garbage: bool = True):
    """A contract batch (zoo.testing.model_batch) as tensors; padding holds large values when ``garbage``."""
    return model_batch(SPEC, lengths, frames=pad_to, garbage=garbage, seed=seed, tensors=True)

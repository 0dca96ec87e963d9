"""What test_nextvlad.py and test_mix_nextvlad.py share: a small dataset and model size, contract batches."""

from __future__ import annotations

import numpy as np

from zoo import DatasetSpec, build_model

SPEC = DatasetSpec(num_classes=9, features={"rgb": 16, "audio": 8}, max_frames=20)
SMALL = {"cluster_size": 6, "groups": 4, "expansion": 2, "hidden_size": 24, "gating_reduction": 4}


def small_model(paddle, name: str, seed: int = 0, **options):
    """Model ``name`` ("nextvlad" or "mix-nextvlad") in the SMALL size, ``options`` overriding it."""
    paddle.seed(seed)
    return build_model(name, spec=SPEC, **{**SMALL, **options})


def make_batch(paddle, lengths: list[int], seed: int = 0, pad_to: int | None = None, garbage: bool = True):
    """A contract batch; padded frames hold large random values when ``garbage`` (they must not matter)."""
    junk = np.random.default_rng(seed + 99)
    t = pad_to or max(lengths)
    batch = {}
    for f, (name, dim) in enumerate(SPEC.features.items()):
        x = 40.0 * junk.normal(size=(len(lengths), t, dim)) if garbage else np.zeros((len(lengths), t, dim))
        for i, n in enumerate(lengths):  # video i's frames do not depend on the other videos
            x[i, :n] = np.random.default_rng([seed, i, f]).uniform(-2, 2, size=(n, dim))
        batch[name] = paddle.to_tensor(x.astype(np.float32))
    mask = (np.arange(t)[None, :] < np.array(lengths)[:, None]).astype(np.float32)
    batch["mask"] = paddle.to_tensor(mask)
    batch["num_frames"] = paddle.to_tensor(np.array(lengths, np.int64))
    return batch

"""The tiny synthetic YouTube-8M dataset that the engine, run-directory, EMA and layout tests train and read."""

from __future__ import annotations

import json
from pathlib import Path

TINY_CLASSES = 12
TINY_VIDEOS = {"train": 60, "validate": 24, "test": 24}
TINY_NEXTVLAD = ["model.cluster_size=4", "model.groups=2", "model.hidden_size=16", "model.gating_reduction=4"]


def tiny_dataset(root: Path, seed: int = 3) -> Path:
    """Write 60 train, 24 validate and 24 test videos of 3-9 frames (TFRecords, 2/1/1 shards) into ``root``."""
    from zoo_yt8m_data.synth import SynthSpec, generate

    spec = SynthSpec(
        train_videos=TINY_VIDEOS["train"],
        valid_videos=TINY_VIDEOS["validate"],
        test_videos=TINY_VIDEOS["test"],
        classes=TINY_CLASSES,
        min_frames=3,
        max_frames=9,
        train_shards=2,
        valid_shards=1,
        test_shards=1,
        seed=seed,
    )
    generate(root, spec)
    return root


def tiny_run_overrides(data: Path, run_dir: Path, *extra: str) -> list[str]:
    """``-o`` overrides that train a tiny ``nextvlad`` for 2 epochs on a tiny dataset's splits into ``run_dir``."""
    return [
        *TINY_NEXTVLAD,
        "dataset.preset=yt8m",
        f"dataset.num_classes={TINY_CLASSES}",
        f"data.train={json.dumps(str(data / 'train'))}",
        f"data.valid={json.dumps(str(data / 'validate'))}",
        f"data.test={json.dumps(str(data / 'test'))}",
        "data.shuffle_buffer=16",
        "train.batch_size=8",
        "train.epoch=2",
        "train.learning_rate=0.003",
        f"train.save_dir={json.dumps(str(run_dir))}",
        "eval.batch_size=16",
        *extra,
    ]

"""The tiny synthetic YouTube-8M dataset that the engine, run-directory, EMA and layout tests train and read."""

from __future__ import annotations

from pathlib import Path

TINY_CLASSES = 12


def tiny_dataset(root: Path, seed: int = 3) -> Path:
    """Write 60 train, 24 validate and 24 test videos of 3-9 frames (TFRecords, 2/1/1 shards) into ``root``."""
    from zoo_yt8m_data.synth import SynthSpec, generate

    spec = SynthSpec(
        train_videos=60,
        valid_videos=24,
        test_videos=24,
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

"""YouTube-8M data for yt8m-zoo: TFRecord readers without TensorFlow, sample data, download, pack, inspect.

Registers the dataset preset ``yt8m`` (the 2018 release's facts), the readers ``yt8m-frame``,
``yt8m-video``, ``yt8m-segment`` and ``paddlevideo-pkl``, and the ``zoo data`` command (synth, download,
pack, inspect). Registration is by path: nothing is imported until a reader or the command is used.
"""

from __future__ import annotations

from zoo import hookimpl
from zoo.contracts import DatasetPreset, DatasetSpec

YT8M = DatasetPreset(
    name="yt8m",
    spec=DatasetSpec(num_classes=3862, features={"rgb": 1024, "audio": 128}, max_frames=300),
    description="YouTube-8M 2018 (v2) frame features: 3862 classes, rgb 1024 + audio 128 per frame",
    reader="yt8m-frame",
    other_readers=("yt8m-video", "paddlevideo-pkl"),
    metric="yt8m",
)
YT8M_SEGMENTS = DatasetPreset(
    name="yt8m-segments",
    spec=DatasetSpec(num_classes=3862, features={"rgb": 1024, "audio": 128}, max_frames=300),
    description="YouTube-8M 2019 segment-rated partitions (3/frame/validate, 3/frame/test)",
    reader="yt8m-segment",
    metric="yt8m-segment",
)

READERS = {
    "yt8m-frame": ("readers:FrameFeatureReader", "YouTube-8M frame-level TFRecords (SequenceExamples)"),
    "yt8m-video": ("readers:VideoFeatureReader", "YouTube-8M video-level TFRecords (mean features)"),
    "yt8m-segment": ("readers:SegmentReader", "YouTube-8M 2019 segment-rated frame TFRecords"),
    "paddlevideo-pkl": ("readers:PaddleVideoPickleReader", "PaddleVideo 1.x pickles (tf2pkl.py output)"),
}


@hookimpl
def zoo_register_datasets(register) -> None:
    register(YT8M)
    register(YT8M_SEGMENTS)


@hookimpl
def zoo_register_readers(register) -> None:
    for name, (target, summary) in READERS.items():
        register(f"{__name__}.{target}", name=name, summary=summary)


@hookimpl
def zoo_register_commands(register) -> None:
    register(
        f"{__name__}.commands:DataCommand",
        name="data",
        summary="YouTube-8M data: synth, download, pack, inspect (no TensorFlow needed)",
    )

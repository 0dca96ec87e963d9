"""``zoo extract``: YouTube-8M features from your own video files (Google's recipe; docs/extract.md)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from zoo.errors import UsageError

DESCRIPTION = """\
YouTube-8M features from video files, as Google computed the dataset's: 1 frame per second through Google's
Inception graph and PCA, sound through VGGish and its PCA, 8-bit codes, written as 2018 frame-level records.

  zoo extract clips/ --output features/             every video in a folder (recursively)
  zoo extract videos.csv --output features/         Google's input CSV: <video_file>,<labels joined by ;>
  zoo extract 'in/*.mp4' a.mkv --output one.tfrecord --no-audio

Model files are downloaded on first use into the cache (their SHA-256 recorded then and checked later), or
taken from --model-dir (Google's .tgz archives or their contents, or MediaPipe's set: vggish_new.pb and
the *_matrix_data.pb PCA files). Rotation metadata is applied (upright frames); a file cut short is an error.
Rerunning into the same folder skips the videos already written. Exit codes: 0 ok, 1 a video failed (listed),
2 usage error.
"""


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _rate(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0 < value <= 1000:
        raise argparse.ArgumentTypeError(f"expected frames per second in (0, 1000], got {value}")
    return value


def add_model_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model-dir",
        dest="extract_model_dir",  # zoo predict's --model (an exported model) has the dest model_dir
        type=Path,
        help="Google's model files (archives or extracted; or MediaPipe's vggish_new.pb and *_matrix_data.pb) "
        "instead of downloads",
    )
    p.add_argument(
        "--model-url",
        action="append",
        metavar="NAME=URL",
        help="download NAME (inception, pca, vggish, vggish-pca) from URL instead of its official address",
    )
    p.add_argument(
        "--model-sha256",
        action="append",
        metavar="NAME=HEX",
        help="the SHA-256 a model file must have (checked instead of the one recorded at its first download)",
    )
    p.add_argument(
        "--no-audio",
        action="store_true",
        help="no VGGish: write 128 zero bytes per frame as Google's extractor does (the report says so)",
    )
    p.add_argument(
        "--max-frames", type=_positive, default=300, help="frames per video (default 300; the paper: 360)"
    )
    p.add_argument("--frames-per-second", type=_rate, default=1.0, help="default 1, as the dataset")
    p.add_argument(
        "--max-pixels",
        type=_positive,
        default=7680 * 4320,
        help="largest frame accepted, in pixels (default 8K: 7680x4320)",
    )
    p.add_argument("-j", "--jobs", type=_positive, default=1, help="videos extracted in parallel (default 1)")
    p.add_argument(
        "--threads", type=int, default=0, help="TensorFlow's threads per operation (default 0: all cores)"
    )
    p.add_argument(
        "--batch-frames",
        type=_positive,
        default=8,
        help="frames per run of the Inception network (default 8; used only when the graph's batches give "
        "its one-frame activations bit for bit, checked when loaded; 1: one frame per run)",
    )
    p.add_argument(
        "--runtime",
        choices=("tensorflow", "onnx"),
        default="tensorflow",
        help="run the Inception graph in TensorFlow (default) or converted to ONNX Runtime (checked against "
        "TensorFlow on probe frames when loaded; not faster than TensorFlow on the CPUs measured, see "
        "docs/extract.md)",
    )


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected seconds >= 0, got {value}")
    return value


def add_prediction_arguments(p) -> None:
    """The flags ``zoo predict`` gets from this plugin (the ``predict-videos`` extension)."""
    p.add_argument(
        "--videos",
        nargs="+",
        metavar="VIDEO",
        help="classify video files (files, folders, globs, Google's CSV): their features are extracted into "
        "OUTPUT/features first (zoo extract's options apply; docs/extract.md)",
    )
    p.add_argument(
        "--timeline",
        action="store_true",
        help="also label windows over each video (timeline.json: window start, end, top classes)",
    )
    p.add_argument("--window", type=_seconds, default=5.0, help="timeline window in seconds (default 5)")
    p.add_argument(
        "--overlap", type=_seconds, default=4.0, help="overlap of timeline windows in seconds (default 4)"
    )


class PredictVideos:
    """``zoo predict --videos VIDEO...`` (or ``zoo predict VIDEO.mp4``): extract the videos' features, then
    predict on them."""

    name = "predict-videos"
    command = "predict"

    @staticmethod
    def add_arguments(p: argparse.ArgumentParser) -> None:
        group = p.add_argument_group("video files (zoo extract's options: docs/extract.md)")
        add_prediction_arguments(group)
        add_model_arguments(group)

    @staticmethod
    def run(args: argparse.Namespace) -> int | None:
        from zoo_yt8m_extract.sources import VIDEO_SUFFIXES

        model = getattr(args, "model", None)
        if model and Path(model).suffix.lower() in VIDEO_SUFFIXES and Path(model).is_file():
            args.videos = [model, *(args.videos or [])]  # `zoo predict VIDEO.mp4 --weights RUN`
            args.model = None
        if not args.videos:
            if args.timeline:
                raise UsageError("--timeline labels windows of video files: give them with --videos")
            return None
        if args.segments or args.filelist:
            raise UsageError(
                "--videos predicts on the videos' own features: leave out --filelist and --segments"
            )
        from zoo_yt8m_extract.predict import predict_videos
        from zoo_yt8m_extract.sources import expand

        videos = expand(args.videos)
        if not videos:
            raise UsageError("--videos: no videos given")
        return predict_videos(videos, args)


class ExtractCommand:
    name = "extract"
    help = "YouTube-8M features (rgb, audio) from your own video files, as Google computed them"

    @staticmethod
    def add_arguments(p: argparse.ArgumentParser) -> None:
        p.description = DESCRIPTION
        p.formatter_class = argparse.RawDescriptionHelpFormatter
        p.add_argument(
            "videos", nargs="+", metavar="VIDEO", help="video files, folders, globs or Google's CSV"
        )
        p.add_argument(
            "--output",
            "-O",
            required=True,
            type=Path,
            help="a folder (shards part-NNNNN.tfrecord, resumable) or one FILE.tfrecord",
        )
        add_model_arguments(p)
        p.add_argument(
            "--level",
            choices=("frame", "video"),
            default="frame",
            help="frame: SequenceExamples with rgb/audio per frame (default); video: Examples with mean_rgb/mean_audio",
        )
        p.add_argument("--shard-size", type=_positive, default=100, help="videos per shard (default 100)")
        p.add_argument(
            "--num-classes", type=_positive, default=3862, help="labels of a CSV must be below this"
        )
        p.add_argument("--json", action="store_true", help="print the summary as JSON")
        p.add_argument("--quiet", action="store_true", help="no progress bar")

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        from zoo_yt8m_extract.extract import REPORT
        from zoo_yt8m_extract.runner import extract_videos
        from zoo_yt8m_extract.sources import expand

        videos = expand(args.videos, num_classes=args.num_classes)
        if not videos:
            raise UsageError("no videos given")
        output: Path = args.output
        if output.exists() and not output.is_dir() and output.suffix not in (".tfrecord", ".tfrec"):
            raise UsageError(
                f"--output {output}: exists and is not a folder; give a folder or a FILE.tfrecord"
            )
        summary = extract_videos(videos, output, args)
        report = summary.as_dict()
        if args.json:
            print(json.dumps(report, indent=1))
        else:
            print(
                f"videos: {summary.done} done, {len(summary.failed)} failed, {summary.skipped} already done; "
                f"frames: {summary.frames}; {report['video_seconds_per_second']} s of video per second"
            )
            if summary.no_audio:
                print("audio: none (--no-audio): 128 zero bytes per frame, as Google's extractor writes")
            if output.is_dir():
                print(f"records: {output} (report: {output / REPORT})")
        if summary.failed:
            print(f"{len(summary.failed)} video(s) failed:", file=sys.stderr)
            for path, reason in summary.failed:
                print(f"  {path}: {reason}", file=sys.stderr)
            return 1
        return 0

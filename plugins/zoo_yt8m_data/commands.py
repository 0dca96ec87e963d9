"""``zoo data``: synth, download, pack, inspect."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from zoo.errors import UsageError

DESCRIPTION = """\
YouTube-8M data without TensorFlow.

  zoo data synth --output DIR              write a YouTube-8M-format sample dataset (deterministic)
  zoo data synth --segments --output DIR   segment-rated validate/test records in the 2019 layout
  zoo data download --partition 2/frame/train --shard 1,100 --output DIR
                                           the official download protocol: resumable, md5-verified
  zoo data pack INPUT... --output DIR      TFRecords or PaddleVideo pickles -> memory-mapped packed format
  zoo data inspect INPUT... [--json]       records, frame lengths, labels and checksums per file

Exit codes: 0 ok, 1 bad data or failed download, 2 usage error.
"""


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {value}")
    return value


def _features(text: str) -> dict[str, int]:
    """``rgb:1024,audio:128`` -> {"rgb": 1024, "audio": 128}."""
    out = {}
    for part in text.split(","):
        name, _, size = part.partition(":")
        if not name or not size.isdigit() or int(size) < 1:
            raise argparse.ArgumentTypeError(f"expected NAME:SIZE[,NAME:SIZE...], got {text!r}")
        out[name.strip()] = int(size)
    return out


def _add_dataset_arguments(p: argparse.ArgumentParser, *, classes: bool = True) -> None:
    if classes:
        p.add_argument(
            "--num-classes",
            type=int,
            default=3862,
            help="labels must be in [0, N) (default 3862, YouTube-8M 2018)",
        )
    p.add_argument(
        "--features",
        type=_features,
        default={"rgb": 1024, "audio": 128},
        metavar="NAME:SIZE,...",
        help="frame features and sizes (default rgb:1024,audio:128)",
    )


def _feature_key(text: str) -> tuple[str, str]:
    """``rgb=RGB/feature/floats`` -> ("rgb", "RGB/feature/floats")."""
    name, _, key = text.partition("=")
    if not name.strip() or not key.strip():
        raise argparse.ArgumentTypeError(f"expected FEATURE=KEY (e.g. rgb=RGB/feature/floats), got {text!r}")
    return name.strip(), key.strip()


def _add_layout_arguments(p: argparse.ArgumentParser) -> None:
    """The yt8m-frame reader's record layout options (see docs/data.md, "Record layouts")."""
    g = p.add_argument_group("record layout (yt8m-frame TFRecords; see docs/data.md, Record layouts)")
    g.add_argument(
        "--layout",
        choices=["auto", "yt8m", "mediapipe"],
        default="auto",
        help="record keys: YouTube-8M releases, MediaPipe MediaSequence, or whichever is present (auto)",
    )
    g.add_argument(
        "--feature-key",
        action="append",
        type=_feature_key,
        default=[],
        metavar="FEATURE=KEY",
        help="feature list key of a feature, e.g. rgb=RGB/feature/floats (repeatable)",
    )
    g.add_argument("--id-key", help="context key of the video id (e.g. video_id)")
    g.add_argument("--label-key", help="context key of the int64 labels (e.g. clip/label/index)")
    g.add_argument(
        "--dtype",
        choices=["auto", "uint8", "float32"],
        default="auto",
        help="frame values: quantized bytes (uint8), float lists (float32), or either (auto)",
    )
    g.add_argument(
        "--align",
        choices=["auto", "strict", "shortest"],
        default="auto",
        help="features with different frame counts: error (strict), cut to the shortest, or auto",
    )


def _layout_options(args: argparse.Namespace) -> dict[str, Any]:
    """The non-default layout options given on the command line, as reader Config fields."""
    options: dict[str, Any] = {
        "layout": args.layout,
        "feature_keys": dict(args.feature_key),
        "id_key": args.id_key,
        "label_key": args.label_key,
        "dtype": args.dtype,
        "align": args.align,
    }
    return {k: v for k, v in options.items() if v not in (None, "auto", {})}


class DataCommand:
    name = "data"
    help = "YouTube-8M data: synth, download, pack, inspect (no TensorFlow needed)"
    description = DESCRIPTION

    @staticmethod
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        sub = parser.add_subparsers(dest="data_command", metavar="SUBCOMMAND")

        p = sub.add_parser(
            "synth",
            help="write the deterministic YouTube-8M-format sample dataset",
            description="Write real YouTube-8M frame-level TFRecords from a deterministic "
            "generator (train/, validate/, test/, vocabulary.csv, manifest.json).",
        )
        from zoo_yt8m_data.synth import SynthSpec

        d = SynthSpec()
        p.add_argument("--output", "-o", required=True, metavar="DIR", help="where to write (created)")
        p.add_argument(
            "--segments",
            action="store_true",
            help="write segment-rated validate/ and test/ records in the 2019 layout (segment_* context "
            "lists, 5-frame segments, a rated class subset in segment_label_ids.csv) from the same hidden "
            "classes as the video-level data of the same --classes and --seed (docs/segments.md)",
        )
        p.add_argument("--train-videos", type=_positive, default=d.train_videos, metavar="N")
        p.add_argument(
            "--valid-videos",
            type=_positive,
            default=None,
            metavar="N",
            help="default 1000 (--segments: 1200)",
        )
        p.add_argument(
            "--test-videos", type=_positive, default=None, metavar="N", help="default 1000 (--segments: 300)"
        )
        p.add_argument("--classes", type=int, default=d.classes, metavar="C", help=f"default {d.classes}")
        p.add_argument("--min-frames", type=int, default=d.min_frames, metavar="N")
        p.add_argument("--max-frames", type=int, default=d.max_frames, metavar="N")
        p.add_argument("--train-shards", type=int, default=d.train_shards, metavar="N")
        p.add_argument("--valid-shards", type=int, default=d.valid_shards, metavar="N")
        p.add_argument("--test-shards", type=int, default=d.test_shards, metavar="N")
        p.add_argument("--seed", type=int, default=d.seed, metavar="S")

        p = sub.add_parser(
            "download",
            help="download official YouTube-8M shards (resumable, md5-verified)",
            description="The official download protocol (data.yt8m.org/download.py): a plan "
            "of file names and md5s, a deterministic --shard X,Y subset, mirrors. "
            "Files already present with the right md5 are skipped; each file "
            "appears under its final name only once complete and verified.",
        )
        p.add_argument(
            "--partition", required=True, help="for example 2/frame/train, 2/video/validate, 3/frame/validate"
        )
        p.add_argument(
            "--output",
            "-o",
            default=".",
            metavar="DIR",
            help="download directory, or an s3:// or gs:// prefix (default .)",
        )
        p.add_argument(
            "--shard",
            default="1,1",
            metavar="X,Y",
            help="download the X-th of Y deterministic parts (default 1,1: everything)",
        )
        p.add_argument("--mirror", default="us", help="us, eu or asia (default us)")
        p.add_argument(
            "--base-url",
            default=None,
            metavar="URL",
            help="plan and files from here instead of the official servers (a local mirror); "
            "the plan is BASE/{version}/download_plans/..., files BASE/{partition}/NAME",
        )
        p.add_argument("--retries", type=int, default=4, help="attempts per file after the first (default 4)")
        p.add_argument("--timeout", type=float, default=60.0, help="seconds per network operation")
        p.add_argument(
            "--max-file-mb",
            type=float,
            default=None,
            metavar="MB",
            help="largest file accepted, whatever the server announces (default: 4x the largest official "
            "file of the partition's kind: 1600 for frame, 32 for video)",
        )
        p.add_argument(
            "--stall-seconds",
            type=float,
            default=120.0,
            metavar="S",
            help="end (and retry) a transfer slower than 4 KB/s over this many seconds (default 120)",
        )
        p.add_argument("--dry-run", action="store_true", help="print what would be downloaded and exit")

        p = sub.add_parser(
            "pack",
            help="convert TFRecords or PaddleVideo pickles to the fast packed format",
            description="Convert frame-level TFRecords (or PaddleVideo 1.x pickles) into "
            "memory-mapped uint8 arrays plus an index (no pickle, no TensorFlow). "
            "One shard per input file, in parallel; resumable; every shard is "
            "read back and checksummed. Point data.train at the output directory.",
        )
        p.add_argument("inputs", nargs="+", metavar="INPUT", help="files, directories, globs or .list files")
        p.add_argument("--output", "-o", required=True, metavar="DIR")
        p.add_argument("--jobs", "-j", type=int, default=0, help="parallel processes (default: all cores)")
        p.add_argument(
            "--reader",
            default="yt8m-frame",
            choices=["yt8m-frame", "paddlevideo-pkl"],
            help="input format (default yt8m-frame TFRecords)",
        )
        p.add_argument("--skip-corrupt", action="store_true", help="skip damaged records and report them")
        p.add_argument(
            "--quantize",
            action="store_true",
            help="store float frame features as uint8 (the releases' quantization; 4x smaller) instead of float32",
        )
        p.add_argument(
            "--no-verify-crc",
            dest="verify_crc",
            action="store_false",
            help="do not check TFRecord checksums while reading",
        )
        _add_dataset_arguments(p)
        _add_layout_arguments(p)

        p = sub.add_parser(
            "inspect",
            help="records, frame lengths, labels and checksums per file",
            description="Read every record and report counts, a frame-length histogram, label "
            "statistics and the checksum check per file. Exit code 1 when any file "
            "has damaged records.",
        )
        p.add_argument("inputs", nargs="+", metavar="INPUT", help="files, directories, globs or .list files")
        p.add_argument(
            "--reader",
            default="yt8m-frame",
            choices=["yt8m-frame", "yt8m-video", "yt8m-segment", "paddlevideo-pkl"],
        )
        p.add_argument("--json", action="store_true", help="print JSON")
        p.add_argument("--max-frames", type=int, default=300, help="frame limit to report against (300)")
        _add_dataset_arguments(p)
        _add_layout_arguments(p)
        parser.set_defaults(_data_parser=parser)

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        command = getattr(args, "data_command", None)
        if command is None:
            args._data_parser.print_help()
            return 2
        return {"synth": _synth, "download": _download, "pack": _pack, "inspect": _inspect}[command](args)


def _synth(args: argparse.Namespace) -> int:
    from zoo_yt8m_data.synth import SynthSpec, generate

    if args.segments:
        return _synth_segments(args)
    d = SynthSpec()
    spec = SynthSpec(
        train_videos=args.train_videos,
        valid_videos=d.valid_videos if args.valid_videos is None else args.valid_videos,
        test_videos=d.test_videos if args.test_videos is None else args.test_videos,
        classes=args.classes,
        min_frames=args.min_frames,
        max_frames=args.max_frames,
        train_shards=args.train_shards,
        valid_shards=args.valid_shards,
        test_shards=args.test_shards,
        seed=args.seed,
    )
    manifest = generate(args.output, spec, progress=True)
    for split, files in manifest["splits"].items():
        videos = sum(manifest["files"][f]["videos"] for f in files)
        print(f"{split}: {videos} videos in {len(files)} files")
    print(f"{args.output}: {spec.classes} classes, vocabulary.csv, manifest.json")
    return 0


def _synth_segments(args: argparse.Namespace) -> int:
    from zoo_yt8m_data.segment_synth import SegmentSynthSpec, generate_segments

    d = SegmentSynthSpec()
    frames = {}
    if args.min_frames != 10:  # the video-level default; segments need whole 5-frame segments
        frames["min_frames"] = args.min_frames
    if args.max_frames != 60:
        frames["max_frames"] = args.max_frames
    spec = SegmentSynthSpec(
        valid_videos=d.valid_videos if args.valid_videos is None else args.valid_videos,
        test_videos=d.test_videos if args.test_videos is None else args.test_videos,
        classes=args.classes,
        valid_shards=args.valid_shards,
        test_shards=args.test_shards,
        seed=args.seed,
        **frames,
    )
    manifest = generate_segments(args.output, spec, progress=True)
    for split, files in manifest["splits"].items():
        info = [manifest["files"][f] for f in files]
        pairs = sum(i.get("rated_pairs", 0) for i in info)
        rated = f", {pairs} rated (segment, class) pairs" if pairs else " (no ratings)"
        print(f"{split}: {sum(i['videos'] for i in info)} videos in {len(files)} files{rated}")
    print(
        f"{args.output}: {spec.classes} classes, {len(manifest['rated_classes'])} rated "
        f"(segment_label_ids.csv), vocabulary.csv, manifest.json"
    )
    return 0


def _download(args: argparse.Namespace) -> int:
    from zoo_yt8m_data.download import download, parse_shard

    shard = parse_shard(args.shard)
    from zoo.fetch import Limits
    from zoo_yt8m_data.download import default_max_bytes

    if (
        args.retries < 0
        or not args.timeout > 0
        or not (args.max_file_mb is None or 0 < args.max_file_mb < 2**40)
        or not args.stall_seconds > 0
    ):
        raise UsageError(
            "--retries must be >= 0; --timeout, --max-file-mb and --stall-seconds must be > 0 "
            "(--max-file-mb below 2**40)"
        )
    max_bytes = (
        default_max_bytes(args.partition) if args.max_file_mb is None else int(args.max_file_mb * 2**20)
    )
    limits = Limits(timeout=args.timeout, max_bytes=max_bytes, stall_seconds=args.stall_seconds)
    result = download(
        args.partition,
        args.output,
        shard=shard,
        mirror=args.mirror,
        base_url=args.base_url,
        retries=args.retries,
        limits=limits,
        dry_run=args.dry_run,
    )
    return 0 if result.ok else 1


def _pack(args: argparse.Namespace) -> int:
    from zoo_yt8m_data.packing import pack

    if args.jobs < 0:
        raise UsageError("--jobs must be >= 0")
    report = pack(
        args.inputs,
        args.output,
        reader=args.reader,
        features=args.features,
        num_classes=args.num_classes,
        jobs=args.jobs,
        verify_crc=args.verify_crc,
        skip_corrupt=args.skip_corrupt,
        quantize=args.quantize,
        options=_layout_options(args),
    )
    print(report.summary())
    return 0


def _inspect(args: argparse.Namespace) -> int:
    from zoo_yt8m_data.inspection import inspect_sources

    result: dict[str, Any] = inspect_sources(
        args.inputs,
        reader=args.reader,
        features=args.features,
        num_classes=args.num_classes,
        max_frames=args.max_frames,
        options=_layout_options(args),
    )
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        from zoo_yt8m_data.inspection import format_report

        print(format_report(result))
    if result["damaged_files"]:
        print(f"{result['damaged_files']} file(s) have damaged records", file=sys.stderr)
        return 1
    return 0

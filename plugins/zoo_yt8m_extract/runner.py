"""Running an extraction from command-line arguments (``zoo extract`` and ``zoo predict --videos``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from zoo.errors import UsageError


def model_files(args: argparse.Namespace):
    from zoo_yt8m_extract.models import URLS, ModelFiles, check_sha256, parse_assignments

    model_dir = args.extract_model_dir
    if model_dir is not None and not model_dir.is_dir():
        raise UsageError(f"--model-dir {model_dir}: no such folder")
    urls = dict(URLS)
    urls.update(parse_assignments(args.model_url, "--model-url"))
    return ModelFiles(
        model_dir=model_dir,
        urls=urls,
        sha256=parse_assignments(args.model_sha256, "--model-sha256", check_sha256),
        quiet=getattr(args, "quiet", False),
    )


def extract_options(args: argparse.Namespace, **overrides):
    from zoo_yt8m_extract.extract import Options

    values = dict(
        every_ms=1000.0 / args.frames_per_second,
        max_frames=args.max_frames,
        max_pixels=args.max_pixels,
        audio=not args.no_audio,
        jobs=args.jobs,
        threads=args.threads,
        runtime=args.runtime,
        batch_frames=getattr(args, "batch_frames", 8),
    )
    values.update(overrides)
    return Options(**values)


def extract_videos(videos, output: Path, args: argparse.Namespace, windows=None, **overrides):
    from zoo.dirlock import DirectoryLock
    from zoo.progress import Progress
    from zoo_yt8m_extract.extract import Extractor, run

    options = extract_options(
        args, level=getattr(args, "level", "frame"), shard_size=getattr(args, "shard_size", 100), **overrides
    )
    files = model_files(args)
    extractor = Extractor(files, options)
    if not output.suffix.startswith(".tfrec"):
        output.mkdir(parents=True, exist_ok=True)
        lock = DirectoryLock(output / ".extract.lock", what="extraction folder").acquire(
            lambda m: print(m, file=sys.stderr)
        )
    else:
        lock = None
    bar = Progress("extract", len(videos), unit="video", enabled=not getattr(args, "quiet", False))
    frames = 0

    def on_video(video, feats, error) -> None:
        nonlocal frames
        if error:
            print(f"failed: {video.path}: {error}", file=sys.stderr)
        else:
            frames += len(feats.rgb)
        bar.update(1, frames=frames)

    try:
        summary = run(
            videos, extractor, output, options, on_video=on_video, models=files.used, windows=windows
        )
    finally:
        bar.close()
        if lock is not None:
            lock.release()
    if summary.no_audio:
        print(
            "note: --no-audio: the audio features are 128 zero bytes per frame (Google's choice)",
            file=sys.stderr,
        )
    return summary

"""From video files to YouTube-8M records: frames -> Inception -> PCA -> 8-bit codes, sound -> VGGish -> PCA.

Each video is decoded in a thread of its own (:class:`Decoding`), started before the video's turn: its frames
wait in a bounded queue, so the next video is decoded while the network works on the current one (PyAV and
TensorFlow release the GIL). The network takes the frames ``batch_frames`` at a time (a batched import of
the same graph, used only when it gives the one-frame run's activations bit for bit:
:class:`~zoo_yt8m_extract.networks.InceptionGraph`). ``jobs`` videos go through the network at once, each
in a worker thread. Records go to shards of ``shard_size``
videos, each written atomically with a JSON sidecar listing its videos; a rerun reads the sidecars and skips
the videos already written, so an interrupted extraction resumes and never leaves a half-written shard.
"""

from __future__ import annotations

import contextlib
import json
import queue
import re
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from zoo.atomic import atomic_path, atomic_write_text
from zoo.errors import DataError
from zoo_yt8m_extract import audio as audio_front
from zoo_yt8m_extract import records
from zoo_yt8m_extract.frames import VideoError, decode_audio, decode_frames, has_audio
from zoo_yt8m_extract.models import ModelFiles
from zoo_yt8m_extract.networks import InceptionGraph, OnnxInception, VGGish, VGGishGraph, load_vggish
from zoo_yt8m_extract.pca import Pca, quantize
from zoo_yt8m_extract.sources import Video
from zoo_yt8m_extract.windows import window_bounds, window_id

REPORT = "extract_report.json"
NO_AUDIO = "has no audio track; pass --no-audio to write Google's zero audio features instead"
_SHARD = re.compile(r"^part-(\d{5})\.tfrecord$")


@dataclass
class Options:
    every_ms: float = 1000.0
    max_frames: int = 300
    max_pixels: int = 7680 * 4320
    audio: bool = True  # False: Google's 128 zero bytes per frame
    level: str = "frame"  # or "video": mean_rgb / mean_audio only
    shard_size: int = 100
    jobs: int = 1
    threads: int = 0  # TensorFlow's intra-op threads (0: all cores)
    runtime: str = "tensorflow"  # or "onnx": the graph converted and run by ONNX Runtime (checked against TF)
    batch_frames: int = 8  # frames per network run (1: one frame per run, as Google's extractor)
    queue_frames: int = 16  # decoded frames waiting for the network, per video


@dataclass
class Features:
    """One video's features: float PCA outputs and their 8-bit codes."""

    rgb: np.ndarray  # float32 [n, 1024]
    audio: np.ndarray  # float32 [n, 128] (zeros with --no-audio)
    seconds: float  # the timestamp of the last frame taken
    audio_present: bool
    stamps: list[float] = field(default_factory=list)  # the timestamp of each frame taken

    def record(
        self, video: Video, level: str, frames: list[int] | None = None, vid: str | None = None
    ) -> bytes:
        """The video's record (or, with ``frames``, the record of those frames under the id ``vid``)."""
        rgb, sound = (self.rgb, self.audio) if frames is None else (self.rgb[frames], self.audio[frames])
        name = (vid or video.id).encode("utf-8")
        means = {"rgb": rgb.mean(axis=0), "audio": sound.mean(axis=0)}
        if level == "video":
            return records.example(name, video.labels, means)
        codes = {"rgb": quantize(rgb)}
        # Google's extractor writes 128 zero *bytes* per frame without audio (not the code of 0.0)
        codes["audio"] = quantize(sound) if self.audio_present else np.zeros((len(rgb), 128), np.uint8)
        return records.sequence_example(name, video.labels, codes, means)


class Extractor:
    """The loaded networks and PCAs; :meth:`features` is thread-safe. ``inception`` and ``vggish``: networks
    already loaded (shared between extractors, as the tests and ``--timeline`` do)."""

    def __init__(
        self,
        files: ModelFiles,
        options: Options,
        *,
        inception: Any | None = None,
        vggish: VGGish | VGGishGraph | None = None,
    ) -> None:
        self.options = options
        self.rgb_pca: Pca = files.rgb_pca()
        if inception is None:
            graph = files.inception_graph()
            inception = InceptionGraph(
                graph,
                where="classify_image_graph_def.pb",
                threads=options.threads,
                batch=options.batch_frames,
            )
            if options.runtime == "onnx":
                inception = OnnxInception(
                    graph, reference=inception, threads=options.threads, where="classify_image_graph_def.pb"
                )
        self.inception = inception

        self.vggish: VGGish | VGGishGraph | None = None
        self.audio_pca: Pca | None = None
        if options.audio:
            self.audio_pca = files.audio_pca()
            self.vggish = vggish or load_vggish(files, threads=options.threads)

    def start(self, video: Video) -> Decoding:
        """Start decoding ``video`` ahead of the network (its checks, frames and sound, in a thread)."""
        return Decoding(self, video)

    def check(self, video: Video) -> None:
        """The failures known before decoding: each names the video."""
        path = video.path
        if video.problem:
            raise VideoError(path, video.problem)
        if not path.exists():
            raise VideoError(path, "no such file")
        if not path.is_file():
            raise VideoError(path, "not a regular file")
        if self.vggish is not None and not has_audio(path):
            raise VideoError(path, NO_AUDIO)

    def features(self, video: Video, decoding: Decoding | None = None) -> Features:
        """The video's features; ``decoding``: its :meth:`start`, when started ahead (closed here)."""
        decoding = decoding or self.start(video)
        path = video.path
        raw, stamps, pending = [], [], []
        batch = max(1, getattr(self.inception, "batch", 1))
        try:
            for seconds, prepared in decoding:
                stamps.append(seconds)
                pending.append(prepared)
                if len(pending) == batch:
                    raw.append(self.inception.run(pending))
                    pending = []
            if pending:
                raw.append(self.inception.run(pending))
            examples = decoding.audio_examples
        finally:
            decoding.close()
        if not raw:
            raise VideoError(path, "no frame could be decoded (an empty or zero-length video)")
        rgb = self.rgb_pca.apply(np.concatenate(raw))
        n = len(rgb)
        if self.vggish is None:
            return Features(rgb, np.zeros((n, 128), np.float32), stamps[-1], False, stamps)
        assert examples is not None and self.audio_pca is not None
        embeddings = self.vggish.embeddings(examples)
        return Features(rgb, self.audio_pca.apply(embeddings), stamps[-1], True, stamps)


_END = object()


class Decoding:
    """One video decoded in a thread of its own: its frames wait for the network in a bounded queue
    (``queue_frames``, at least two batches); then, with audio, the sound is decoded and cut into log-mel
    examples there too. Iterating gives ``(seconds, prepared frame)``; a failure in the thread is raised as a
    :class:`VideoError` naming the video (any exception: the other videos go on)."""

    def __init__(self, extractor: Extractor, video: Video) -> None:
        self.extractor = extractor
        self.video = video
        self.audio_examples: np.ndarray | None = None
        options = extractor.options
        self._queue: queue.Queue = queue.Queue(max(1, options.queue_frames, 2 * options.batch_frames))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._work, name=f"decode {video.path.name}", daemon=True)
        self._thread.start()

    def _put(self, item: Any) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _work(self) -> None:
        extractor, path = self.extractor, self.video.path
        options = extractor.options
        try:
            extractor.check(self.video)
            taken = 0
            for seconds, image in decode_frames(
                path, every_ms=options.every_ms, max_frames=options.max_frames, max_pixels=options.max_pixels
            ):
                if not self._put((seconds, extractor.inception.prepare(image))):
                    return
                taken += 1
            if extractor.vggish is not None and taken:
                samples = decode_audio(path, taken + 1.0)
                if samples is None:
                    raise VideoError(path, NO_AUDIO)
                self.audio_examples = audio_front.examples_per_second(samples, taken)
            self._put(_END)
        except VideoError as exc:
            self._put(exc)
        except DataError as exc:
            self._put(VideoError(path, str(exc)))
        except Exception as exc:  # anything else that broke on this video: named, and the others go on
            self._put(VideoError(path, f"decoding failed ({type(exc).__name__}: {exc})"))
        except (
            BaseException
        ) as exc:  # KeyboardInterrupt and the like: handed to the consumer, which raises it
            self._put(exc)

    def __iter__(self) -> Iterator[tuple[float, Any]]:
        while True:
            item = self._queue.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def close(self) -> None:
        """Stop the thread (when the video is abandoned before its end) and wait for it."""
        self._stop.set()
        self._thread.join()


class ShardedOutput:
    """Shards ``part-NNNNN.tfrecord`` in a folder, each with its sidecar ``part-NNNNN.json``; or one file."""

    def __init__(self, output: Path, shard_size: int) -> None:
        self.output = output
        self.single = output.suffix == ".tfrecord" or output.suffix == ".tfrec"
        self.shard_size = shard_size
        self._lock = threading.Lock()
        self._stack: contextlib.ExitStack | None = None
        self._file: Any = None
        self._entries: list[dict[str, Any]] = []
        self._next = 0
        self.shards: list[str] = []

    def finished(self) -> set[str]:
        """Keys of the videos already written (folder output); removes leftovers of an interrupted run."""
        if self.single or not self.output.is_dir():
            return set()
        done: set[str] = set()
        for leftover in self.output.glob(".part-*.partial"):
            leftover.unlink(missing_ok=True)
        for shard in sorted(self.output.iterdir()):
            match = _SHARD.match(shard.name)
            if not match:
                continue
            self._next = max(self._next, int(match.group(1)) + 1)
            sidecar = shard.with_suffix(".json")
            try:
                entries = json.loads(sidecar.read_text())["videos"]
                done.update(e["key"] for e in entries)
            except FileNotFoundError:
                shard.unlink()  # written, but killed before its sidecar: its videos are done again
            except (ValueError, KeyError, TypeError) as exc:
                raise DataError(
                    f"{sidecar}: unreadable ({exc}); delete it and {shard.name} to redo its videos"
                ) from None
        return done

    def _open(self) -> None:
        name = self.output if self.single else self.output / f"part-{self._next:05d}.tfrecord"
        self._stack = contextlib.ExitStack()
        tmp = self._stack.enter_context(atomic_path(name))
        self._file = self._stack.enter_context(open(tmp, "wb"))
        self._name = name
        self._next += 1

    def _commit(self) -> None:
        assert self._stack is not None
        self._stack.close()  # closes, fsyncs and renames the shard
        if not self.single:
            sidecar = {"videos": self._entries}
            atomic_write_text(self._name.with_suffix(".json"), json.dumps(sidecar, indent=1) + "\n")
        self.shards.append(str(self._name))
        self._stack, self._file, self._entries = None, None, []

    def write(self, record: bytes, entry: dict[str, Any]) -> None:
        with self._lock:
            if self._file is None:
                self._open()
            self._file.write(records.framed(record))
            self._entries.append(entry)
            if not self.single and len(self._entries) >= self.shard_size:
                self._commit()

    def close(self, ok: bool = True) -> None:
        with self._lock:
            if self._stack is None:
                return
            if ok:
                self._commit()
            else:
                self._stack.__exit__(
                    KeyboardInterrupt, KeyboardInterrupt(), None
                )  # removes the partial shard
                self._stack, self._file, self._entries = None, None, []


@dataclass
class Summary:
    done: int = 0
    skipped: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    frames: int = 0
    video_seconds: float = 0.0
    wall_seconds: float = 0.0
    no_audio: bool = False
    shards: list[str] = field(default_factory=list)
    models: dict[str, dict[str, str]] = field(default_factory=dict)
    network: dict[str, Any] = field(default_factory=dict)  # runtime, frames per run and why

    def as_dict(self) -> dict[str, Any]:
        return {
            "videos_done": self.done,
            "videos_skipped_already_done": self.skipped,
            "videos_failed": len(self.failed),
            "failed": [{"path": p, "reason": r} for p, r in self.failed],
            "frames": self.frames,
            "video_seconds": round(self.video_seconds, 3),
            "wall_seconds": round(self.wall_seconds, 3),
            "video_seconds_per_second": round(self.video_seconds / self.wall_seconds, 3)
            if self.wall_seconds
            else None,
            "audio": "zeros (--no-audio: 128 zero bytes per frame, as Google's extractor)"
            if self.no_audio
            else "vggish",
            "shards": self.shards,
            "models": self.models,
            "network": self.network,
        }


def run(
    videos: list[Video],
    extractor: Extractor,
    output: Path,
    options: Options,
    *,
    on_video: Callable[[Video, Features | None, str | None], None] | None = None,
    models: dict[str, dict[str, str]] | None = None,
    windows: tuple[Path, float, float] | None = None,
) -> Summary:
    """Extract ``videos`` into ``output``; a failing video is recorded and the others go on.

    ``windows`` ``(folder, window, stride)``: also write one record per window of each video into ``folder``
    (ids ``VIDEO#t=START,END``), for per-window predictions.
    """
    out = ShardedOutput(output, options.shard_size)
    written = out.finished()
    finished = written
    wout = None
    if windows is not None:
        wout = ShardedOutput(windows[0], options.shard_size)
        finished = written & wout.finished()  # a video whose windows were lost is done again, written once
    summary = Summary(no_audio=not options.audio, models=dict(models or {}))
    summary.network = {
        "runtime": options.runtime,
        "frames_per_run": getattr(extractor.inception, "batch", 1),
        "note": getattr(extractor.inception, "batch_note", ""),
    }
    todo = [v for v in videos if v.key not in finished]
    summary.skipped = len(videos) - len(todo)
    start = time.perf_counter()
    lock = threading.Lock()

    # the videos' decodings start ``jobs`` videos ahead of the network: while a worker's video is in the
    # network, the video it takes next is being decoded
    decodings: dict[int, Decoding] = {}

    def start_decoding(index: int) -> None:
        with lock:
            if index < len(todo) and index not in decodings:
                decodings[index] = extractor.start(todo[index])

    def one(index: int) -> None:
        video = todo[index]
        start_decoding(index)
        start_decoding(index + max(1, options.jobs))
        with lock:
            decoding = decodings.pop(index)
        try:
            feats = extractor.features(video, decoding)
            record = feats.record(video, options.level)
        except DataError as exc:
            reason = exc.reason if isinstance(exc, VideoError) else str(exc)
            with lock:
                summary.failed.append((str(video.path), reason))
            if on_video:
                on_video(video, None, reason)
            return
        entry = {"key": video.key, "path": str(video.path), "id": video.id, "frames": len(feats.rgb)}
        if video.key not in written:
            out.write(record, entry)
        if wout is not None and windows is not None:
            for begin, end, frames in window_bounds(feats.stamps, windows[1], windows[2]):
                wout.write(feats.record(video, options.level, frames, window_id(video.id, begin, end)), entry)
        with lock:
            summary.done += 1
            summary.frames += len(feats.rgb)
            summary.video_seconds += feats.seconds + options.every_ms / 1000.0
        if on_video:
            on_video(video, feats, None)

    ok = False
    try:
        if options.jobs <= 1:
            for index in range(len(todo)):
                one(index)
        else:
            with ThreadPoolExecutor(options.jobs, thread_name_prefix="extract") as pool:
                for future in [pool.submit(one, i) for i in range(len(todo))]:
                    future.result()
        ok = True
    finally:
        with lock:
            abandoned = list(decodings.values())
            decodings.clear()
        for decoding in abandoned:
            decoding.close()
        out.close(ok)
        if wout is not None:
            wout.close(ok)
    summary.wall_seconds = time.perf_counter() - start
    summary.shards = out.shards
    if not out.single:
        atomic_write_text(output / REPORT, json.dumps(summary.as_dict(), indent=1) + "\n")
    return summary

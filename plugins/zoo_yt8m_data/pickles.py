"""PaddleVideo 1.x pickle shards, loaded with an unpickler that can only build the format's own types.

``tf2pkl.py`` wrote, per TFRecord shard, ``pickle.dump(list_of_dicts, protocol=2)`` with dicts
``{'video': id, 'feature': uint8 [n, 1024], 'audio': uint8 [n, 128], 'label': [int, ...], 'nframes': n}``
(``nframes`` is a numpy int32 capped at 300; ``feature`` keeps every frame). Loading a pickle normally runs
whatever callables the file names; here :mod:`zoo.safepickle` admits only numpy's array and scalar reconstructors and
plain containers, so a crafted file cannot execute code.
"""

from __future__ import annotations

import contextlib
import io
import pickle
from typing import Any

import numpy as np

from zoo.errors import DataError
from zoo.safepickle import RefusedPickle
from zoo.safepickle import load as restricted_load


def load_pickle(path: str) -> list[dict[str, Any]]:
    """The list of video dicts in ``path`` (a single dict is accepted too: PaddleVideo 2.x split files).

    ``path`` may be a URL (:mod:`zoo.storage`); a pickle is loaded whole either way."""
    from zoo import storage

    try:
        with contextlib.ExitStack() as stack:
            if storage.is_url(path):
                remote = stack.enter_context(storage.open_input(path))
                f = io.BytesIO(remote.read())
                path = storage.redact(path)
            else:
                f = stack.enter_context(open(path, "rb"))
            data = restricted_load(io.BufferedReader(f, 1 << 20))
    except FileNotFoundError:
        raise DataError(f"{path}: file not found; check the path (or the .list file that names it)") from None
    except RefusedPickle as exc:
        raise DataError(
            f"{path}: refused to load this pickle: {exc}. It may be crafted to run code; "
            f"nothing from it was executed. Use TFRecords or packed data instead"
        ) from None
    except (
        pickle.UnpicklingError,
        EOFError,
        ValueError,
        TypeError,
        AttributeError,
        IndexError,
        MemoryError,
        OSError,
    ) as exc:
        raise DataError(
            f"{path}: not a readable PaddleVideo pickle ({type(exc).__name__}: {exc}); the file "
            f"may be truncated: convert its TFRecord again or read the TFRecords directly"
        ) from None
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, list):
        raise DataError(f"{path}: expected a list of video dicts, found {type(data).__name__}")
    return data


def pickle_record(item: Any, features: dict[str, int], max_frames: int) -> dict[str, Any]:
    """One pickled video as a reader record (uint8 features); ValueError says what is wrong with it."""
    if not isinstance(item, dict):
        raise ValueError(f"expected a dict, found {type(item).__name__}")
    keys = {"rgb": "feature", "audio": "audio"}
    video = item.get("video")
    if isinstance(video, np.ndarray):
        video = video.tobytes()
    if isinstance(video, bytes):
        video = video.decode("utf-8", "backslashreplace")
    if not isinstance(video, str):
        raise ValueError(f"'video' should be the id string, found {type(video).__name__}")
    labels = item.get("label", [])
    if isinstance(labels, np.ndarray):
        labels = labels.ravel().tolist()
    if not isinstance(labels, (list, tuple)) or not all(isinstance(v, (int, np.integer)) for v in labels):
        raise ValueError(f"video {video!r}: 'label' should be a list of ints")
    record: dict[str, Any] = {"id": video, "labels": [int(v) for v in labels]}
    n = None
    for name, size in features.items():
        key = keys.get(name, name)
        frames = item.get(key)
        if not isinstance(frames, np.ndarray):
            raise ValueError(f"video {video!r}: no {key!r} array (feature {name!r})")
        if frames.dtype != np.uint8:
            raise ValueError(f"video {video!r}: {key!r} is {frames.dtype}, expected quantized uint8")
        if frames.ndim == 1 and frames.size % size == 0:
            frames = frames.reshape(-1, size)
        if frames.ndim != 2 or frames.shape[1] != size:
            raise ValueError(
                f"video {video!r}: {key!r} has shape {frames.shape}, expected [frames, {size}] "
                f"(dataset.features says {name}: {size})"
            )
        n = len(frames) if n is None else min(n, len(frames))
        record[name] = frames
    nframes = item.get("nframes", n)
    try:
        nframes = int(nframes)
    except (TypeError, ValueError):
        raise ValueError(f"video {video!r}: 'nframes' should be an integer, found {nframes!r}") from None
    n = max(0, min(n or 0, nframes, max_frames))
    for name in features:
        record[name] = record[name][:n]
    record["num_frames"] = n
    return record

"""Distillation from teacher predictions: the memory-mapped teacher store and the soft targets of a batch.

The teachers (prediction files or run directories, combined as ``zoo ensemble`` does) are computed once over
the training split and written to ``train.distill.store`` as three ``.npy`` files opened with
``mmap_mode="r"``: ``ids`` (sorted fixed-width bytes), ``classes`` int32 ``[N, k]`` (-1 pads) and ``probs``
float32 ``[N, k]``. A batch looks its ids up by binary search, so only the pages it touches are read: 4M
videos x top-20 is ~700 MB on disk and a few MB in memory. ``store.json`` records what the store was built
from; a store built from other teachers (or another k) is rebuilt, an identical one reused.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from zoo.engine.runs.bucket import local_run_dir
from zoo.errors import DataError

STORE_FILES = ("ids.npy", "classes.npy", "probs.npy")
STORE_VERSION = 1


class TeacherStore:
    """Read-only, memory-mapped teacher predictions: ``ids -> top-k classes and probabilities``."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        missing = [name for name in (*STORE_FILES, "store.json") if not (self.root / name).is_file()]
        if missing:
            raise DataError(f"{self.root}: not a teacher store (missing {', '.join(missing)})")
        self.meta = json.loads((self.root / "store.json").read_text())
        self.ids = np.load(self.root / "ids.npy", mmap_mode="r")
        self.classes = np.load(self.root / "classes.npy", mmap_mode="r")
        self.probs = np.load(self.root / "probs.npy", mmap_mode="r")

    def __len__(self) -> int:
        return len(self.ids)

    @staticmethod
    def write(root: str | Path, ids: np.ndarray, classes: np.ndarray, probs: np.ndarray, meta: dict) -> Path:
        """Write a store (ids sorted, unique) atomically: into a sibling folder, renamed when complete."""
        root = Path(root)
        if len(ids) > 1 and not bool(np.all(ids[1:] > ids[:-1])):
            raise ValueError("teacher store ids must be sorted and unique")
        tmp = root.with_name(f".{root.name}.tmp{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        for name, array, dtype in (
            ("ids.npy", ids, ids.dtype),
            ("classes.npy", classes, np.int32),
            ("probs.npy", probs, np.float32),
        ):
            out = np.lib.format.open_memmap(tmp / name, mode="w+", dtype=dtype, shape=array.shape)
            out[...] = array
            out.flush()
            del out
        record = {"version": STORE_VERSION, "videos": len(ids), "top_k": int(classes.shape[1]), **meta}
        (tmp / "store.json").write_text(json.dumps(record, indent=1))
        if root.exists():
            shutil.rmtree(root)
        os.replace(tmp, root)
        return root

    def rows(self, ids: Sequence[Any]) -> np.ndarray:
        """Row of each id; an id the store lacks is an error naming it."""
        keys = np.array([(i.decode() if isinstance(i, bytes) else str(i)).encode("utf-8") for i in ids])
        rows = np.searchsorted(self.ids, keys)
        found = rows < len(self.ids)
        found[found] = self.ids[rows[found]] == keys[found]
        if not found.all():
            vid = keys[np.flatnonzero(~found)[0]].decode()
            raise DataError(
                f"video {vid!r} is not in the teacher store {self.root} ({len(self)} videos): the teachers "
                f"must predict every training video; check train.distill.teachers and data.train"
            )
        return rows

    def soft_targets(self, ids: Sequence[Any], num_classes: int) -> np.ndarray:
        """Teacher probabilities ``[B, num_classes]`` float32; classes outside the teachers' top-k are 0."""
        rows = self.rows(ids)
        order = np.argsort(rows)  # sorted reads touch the memory map in file order
        classes = np.empty((len(rows), self.classes.shape[1]), dtype=np.int32)
        probs = np.empty((len(rows), self.probs.shape[1]), dtype=np.float32)
        classes[order] = self.classes[rows[order]]
        probs[order] = self.probs[rows[order]]
        if classes.size and classes.max() >= num_classes:
            raise DataError(
                f"{self.root}: the teachers list class {int(classes.max())}, but the dataset has {num_classes}"
            )
        out = np.zeros((len(rows), num_classes), dtype=np.float32)
        listed = classes >= 0
        r = np.broadcast_to(np.arange(len(rows))[:, None], classes.shape)
        out[r[listed], classes[listed]] = probs[listed]
        return out


def soften(probs: np.ndarray, temperature: float) -> np.ndarray:
    """``sigmoid(logit(p) / T)`` with p clipped to [1e-7, 1 - 1e-7] (numpy reference of the loss's targets)."""
    p = np.clip(probs.astype(np.float64), 1e-7, 1 - 1e-7)
    return 1.0 / (1.0 + np.exp(-(np.log(p) - np.log1p(-p)) / temperature))


def store_dir(cfg: Any) -> Path:
    d = cfg.train.distill
    return Path(d.store) if d.store else local_run_dir(cfg.train.save_dir) / "teacher"


def _store_meta(cfg: Any) -> dict[str, Any]:
    d = cfg.train.distill
    teachers = [str(Path(t).resolve()) for t in d.teachers]
    stamps = []
    for t in d.teachers:
        path = Path(t) / "model.safetensors" if Path(t).is_dir() else Path(t)
        stamps.append(path.stat().st_mtime_ns if path.exists() else None)
    return {
        "teachers": teachers,
        "teacher_mtimes": stamps,
        "teacher_weights": d.teacher_weights,
        "mean": d.mean,
        "missing": d.missing,
        "requested_top_k": d.top_k,
        "train": list(cfg.data.train or []),
    }


def open_teacher_store(cfg: Any, *, log: Any = print, build: bool = True) -> TeacherStore:
    """The store of ``cfg.train.distill``: reused when it was built from the same teachers, else built now
    (every teacher over the training split, combined, top-k kept)."""
    from zoo.engine.infer import ensemble as ens

    d, root = cfg.train.distill, store_dir(cfg)
    meta = _store_meta(cfg)
    if (root / "store.json").is_file():
        saved = json.loads((root / "store.json").read_text())
        if {k: saved.get(k) for k in meta} == meta:
            return TeacherStore(root)
        log(f"teacher store {root} was built from other teachers or settings: rebuilding it")
    if not build:
        raise DataError(f"{root}: no teacher store for these teachers yet (the main process builds it)")
    log(f"building the teacher store {root} from {len(d.teachers)} teacher(s) over the training split")
    tables = [ens.load_member(t, cfg, "train", d.top_k) for t in d.teachers]
    weights = d.teacher_weights if d.teacher_weights is not None else [1.0] * len(tables)
    if len(weights) != len(tables):
        raise DataError(
            f"train.distill.teacher_weights: {len(weights)} weights for {len(tables)} teachers; give one each"
        )
    combined = ens.combine(tables, weights, mean=d.mean, missing=d.missing, top_k=d.top_k, source="teachers")
    TeacherStore.write(root, combined.ids, combined.classes, combined.probs, meta)
    return TeacherStore(root)

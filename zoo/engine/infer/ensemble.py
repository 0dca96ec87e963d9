"""Ensembles of runs and prediction files: top-k tables, weighted means, weight fitting and scoring.

Every member becomes a :class:`TopKTable`: its videos sorted by id, each with up to k classes and their
probabilities (a prediction file holds only its top k; a run is predicted to ``member_top_k`` classes).
Members are combined per video over the union of the classes they list. A class a member does not list
counts as that member's lowest listed probability for the video, scaled by ``1 - 1e-6`` so that it ranks
just below the listed ones ("floor", the default), or as 0 ("zero"). The geometric mean takes the logarithm of
``max(p, 1e-8)``, so with "zero" a class missing from any member sinks to the bottom.

Weights are fitted by greedy coordinate ascent on the weight simplex: start from the better of the best
single member and equal weights; then, with steps of 0.2, 0.1 and 0.05 of the total weight, try moving that
share onto each member and off each member, keep a move only if it raises the metric's headline (GAP), and
repeat a step size until no move helps. It needs no gradient and no scipy, and never ends below the best
member on the data it was fitted on. Work is done in blocks of rows, so memory stays near the members'
tables (1.1M videos x top-20 is ~180 MB per member).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from zoo.contracts import Prediction
from zoo.errors import DataError, UsageError

BLOCK = 8192
"""Rows combined at a time."""
FLOOR_SCALE = np.float32(1 - 1e-6)
LOG_EPSILON = 1e-8
FIT_STEPS = (0.2, 0.1, 0.05)
MEANS = ("arithmetic", "geometric")
MISSING = ("floor", "zero")
SHOW_IDS = 3


@dataclass
class TopKTable:
    """One member's predictions: ``ids`` (bytes, sorted), ``classes`` int32 ``[N, k]`` padded with -1 and
    ``probs`` float32 ``[N, k]`` padded with 0, each row best first."""

    source: str
    ids: np.ndarray
    classes: np.ndarray
    probs: np.ndarray

    def __len__(self) -> int:
        return len(self.ids)

    @classmethod
    def from_predictions(cls, source: str, rows: Iterable[Prediction]) -> TopKTable:
        """The table of ``rows`` (any order); a video listed twice is an error naming ``source``."""
        ids: list[bytes] = []
        classes: list[list[int]] = []
        probs: list[list[float]] = []
        for row in rows:
            order = sorted(
                range(len(row.classes)), key=lambda i: (-float(row.scores[i]), int(row.classes[i]))
            )
            ids.append(str(row.id).encode("utf-8"))
            classes.append([int(row.classes[i]) for i in order])
            probs.append([float(row.scores[i]) for i in order])
        width = max((len(c) for c in classes), default=0)
        cls_arr = np.full((len(ids), max(width, 1)), -1, dtype=np.int32)
        prob_arr = np.zeros((len(ids), max(width, 1)), dtype=np.float32)
        for i, (c, p) in enumerate(zip(classes, probs)):
            cls_arr[i, : len(c)] = c
            prob_arr[i, : len(p)] = p
        id_arr = np.array(ids, dtype=f"S{max((len(i) for i in ids), default=1)}")
        order = np.argsort(id_arr, kind="stable")
        id_arr = id_arr[order]
        dup = np.flatnonzero(id_arr[1:] == id_arr[:-1])
        if dup.size:
            raise DataError(
                f"{source}: video {id_arr[dup[0]].decode()!r} is listed more than once; keep one row per video"
            )
        return cls(source, id_arr, cls_arr[order], prob_arr[order])

    @classmethod
    def from_columns(cls, source: str, columns: Any) -> TopKTable:
        """The table of a file read column-wise (``PredictionColumns``, rows ranked best first): sorted by id;
        a video listed twice is an error naming both lines."""
        order = columns.check_unique(source)
        scores = np.asarray(columns.scores, dtype=np.float32)
        if order is None:
            return cls(source, columns.ids, columns.classes, scores)
        return cls(source, columns.ids[order], columns.classes[order], scores[order])

    def columns(self) -> Any:
        """The table as ``PredictionColumns`` (for the formats' ``write_columns``)."""
        from zoo.engine.infer.prediction_files import PredictionColumns

        return PredictionColumns(self.ids, self.classes, self.probs)

    def check_classes(self, num_classes: int) -> None:
        bad = np.flatnonzero((self.classes >= num_classes).any(axis=1))
        if bad.size:
            row = int(bad[0])
            raise DataError(
                f"{self.source}: video {self.ids[row].decode()!r} lists class {int(self.classes[row].max())}, "
                f"but the dataset has {num_classes} classes; members must share the class count"
            )

    def predictions(self) -> list[Prediction]:
        out = []
        for vid, c, p in zip(self.ids, self.classes, self.probs):
            keep = c >= 0
            out.append(Prediction(vid.decode("utf-8"), c[keep].tolist(), p[keep].astype(float).tolist()))
        return out


def read_prediction_file(path: str | Path, num_classes: int | None = None) -> TopKTable:
    """A prediction file through the format plugin whose suffix it has (``.jsonl``, ``.csv``, ...): column-wise
    where the format can (``ColumnarPredictionFormat``), else row by row. With ``num_classes``, a class out of
    range is an error naming the line."""
    from zoo.contracts import ColumnarPredictionFormat
    from zoo.plugins import get_plugins

    path = Path(path)
    formats = {}
    for entry in get_plugins().registry("format"):
        formats.setdefault(str(entry.cls.suffix), entry.cls)
    fmt = formats.get(path.suffix)
    if fmt is None:
        raise UsageError(
            f"{path}: no prediction format reads {path.suffix or 'files without a suffix'!r} files (known: "
            f"{', '.join(sorted(formats))}); give a run directory or a prediction file"
        )
    if not path.is_file():
        raise UsageError(f"{path}: no such prediction file")
    reader = fmt(fmt.Config())
    if isinstance(reader, ColumnarPredictionFormat):
        import inspect

        bounded = (
            num_classes is not None and "num_classes" in inspect.signature(reader.read_columns).parameters
        )
        extra = {"num_classes": num_classes} if bounded else {}  # stop at the first out-of-range class
        columns = reader.read_columns(path, rank=True, dtype=np.float32, **extra)
        if num_classes is not None:
            columns.check_classes(path, num_classes)
        return TopKTable.from_columns(str(path), columns)
    return TopKTable.from_predictions(str(path), reader.read(path))


def check_same_videos(tables: Sequence[TopKTable]) -> None:
    """Every member predicts the same videos; the error names the first member that differs."""
    first = tables[0]
    for table in tables[1:]:
        if len(table) == len(first) and np.array_equal(table.ids, first.ids):
            continue
        extra = np.setdiff1d(table.ids, first.ids)[:SHOW_IDS]
        missing = np.setdiff1d(first.ids, table.ids)[:SHOW_IDS]
        detail = []
        if extra.size:
            detail.append("it has " + ", ".join(repr(v.decode()) for v in extra) + " that the first lacks")
        if missing.size:
            detail.append("it lacks " + ", ".join(repr(v.decode()) for v in missing))
        raise DataError(
            f"{table.source}: predicts {len(table)} videos, {first.source} {len(first)}; {'; '.join(detail)}. "
            f"Ensemble members must predict the same videos (the same split)"
        )


def check_weights(weights: Sequence[float], count: int, where: str) -> np.ndarray:
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (count,):
        raise UsageError(f"{where}: {len(w)} weights for {count} members; give one weight per member")
    if not np.all(np.isfinite(w)) or (w < 0).any() or not (w > 0).any():
        raise UsageError(f"{where}: weights must be non-negative numbers with a positive sum, got {list(w)}")
    w = w / w.max()  # first scaled to at most 1: the sum of 1e308 and 1e308 would overflow to inf
    return w / w.sum()


POSITION_TABLE_BYTES = 160 * 1024**2
"""Largest table of candidate positions kept (8192 rows x 3862 classes x int32 is 127 MB)."""
_positions: list[np.ndarray] = []


def _position_table(size: int) -> np.ndarray:
    """A reusable int32 scratch array of at least ``size`` cells (its contents are garbage)."""
    if not _positions or _positions[0].size < size:
        _positions[:] = [np.empty(size, dtype=np.int32)]
    return _positions[0][:size]


def member_values(tables: Sequence[TopKTable], lo: int, hi: int, missing: str) -> tuple[np.ndarray, ...]:
    """Rows ``lo:hi`` over the union of the members' classes: ``candidates`` ``[n, K]`` (sorted per row),
    ``values`` ``[M, n, K]`` (each member's probability, with the missing-class rule) and ``keep`` ``[n, K]``
    (False for padding and repeated classes).

    A member's class is found in its row's candidates through a ``[n, classes]`` table of candidate
    positions (O(1) per lookup; only the cells of the block's candidates are written and read, so the table
    is reused without clearing); past ``POSITION_TABLE_BYTES`` by one ``searchsorted`` over the block's
    ``row * span + class`` keys instead. Both replace comparing every (candidate, listed class) pair."""
    cand = np.concatenate([t.classes[lo:hi] for t in tables], axis=1)
    cand.sort(axis=1)
    keep = cand >= 0
    keep[:, 1:] &= cand[:, 1:] != cand[:, :-1]
    n, width = cand.shape
    span = int(cand.max(initial=0)) + 2  # -1 padding maps to key row * span - 1
    offsets = np.arange(n, dtype=np.int64)[:, None] * span
    if n * span * 4 <= POSITION_TABLE_BYTES:
        table = _position_table(n * span)
        flat = np.flatnonzero(keep)
        table[(cand + offsets)[keep]] = flat  # the first (kept) copy of each class
        lookup = lambda keys: table[keys]  # noqa: E731
    else:
        sorted_keys = (cand + offsets).ravel()
        lookup = lambda keys: np.searchsorted(sorted_keys, keys)  # noqa: E731
    values = np.empty((len(tables), n, width), dtype=np.float32)
    for m, t in enumerate(tables):
        classes, probs = t.classes[lo:hi], t.probs[lo:hi]
        listed = classes >= 0
        if missing == "floor":
            floor = np.where(listed, probs, np.inf).min(axis=1)
            floor = np.where(np.isfinite(floor), floor, 0).astype(np.float32) * FLOOR_SCALE
        else:
            floor = np.zeros(n, dtype=np.float32)
        values[m] = floor[:, None]
        values[m].reshape(-1)[lookup((classes + offsets)[listed])] = probs[listed]
    return cand, values, keep


def mix(values: np.ndarray, weights: np.ndarray, mean: str) -> np.ndarray:
    """The weighted mean over the member axis (``weights`` sum to 1)."""
    w = weights.astype(np.float32)[:, None, None]
    if mean == "arithmetic":
        return (values * w).sum(axis=0)
    return np.exp((np.log(np.maximum(values, LOG_EPSILON)) * w).sum(axis=0))


def combine(
    tables: Sequence[TopKTable],
    weights: Sequence[float],
    *,
    mean: str = "arithmetic",
    missing: str = "floor",
    top_k: int = 20,
    source: str = "ensemble",
) -> TopKTable:
    """The ensemble's table: each video's ``top_k`` classes by the weighted mean (ties: lowest class)."""
    from zoo.ranking import top_k as best

    _check_rule(mean, missing)
    check_same_videos(tables)
    w = check_weights(weights, len(tables), "weights")
    n = len(tables[0])
    k = min(top_k, sum(t.classes.shape[1] for t in tables))
    out_classes = np.full((n, k), -1, dtype=np.int32)
    out_probs = np.zeros((n, k), dtype=np.float32)
    for lo in range(0, n, BLOCK):
        hi = min(n, lo + BLOCK)
        cand, values, keep = member_values(tables, lo, hi, missing)
        scores = np.where(keep, mix(values, w, mean), -np.inf).astype(np.float32)
        cols, top = best(scores, k)  # candidates are sorted per row: ties go to the lowest class
        rows = np.arange(hi - lo)[:, None]
        listed = np.isfinite(top)
        out_classes[lo:hi] = np.where(listed, cand[rows, cols], -1)
        out_probs[lo:hi] = np.where(listed, top, 0)
    return TopKTable(source, tables[0].ids.copy(), out_classes, out_probs)


def _check_rule(mean: str, missing: str) -> None:
    if mean not in MEANS:
        raise UsageError(f"mean {mean!r}: choose {' or '.join(MEANS)}")
    if missing not in MISSING:
        raise UsageError(f"missing {missing!r}: choose {' or '.join(MISSING)}")


# -- labels and scores -------------------------------------------------------------------------------------


@dataclass
class Labels:
    """Labels of a table's videos, row-aligned and sparse: row i's classes are ``indices[indptr[i]:indptr[i+1]]``."""

    indptr: np.ndarray
    indices: np.ndarray
    num_classes: int

    def dense(self, lo: int, hi: int) -> np.ndarray:
        out = np.zeros((hi - lo, self.num_classes), dtype=np.float32)
        start, stop = self.indptr[lo], self.indptr[hi]
        rows = np.repeat(np.arange(hi - lo), np.diff(self.indptr[lo : hi + 1]))
        out[rows, self.indices[start:stop]] = 1
        return out


def labels_for(ids: np.ndarray, videos: Iterable[tuple[str, Any]], num_classes: int, where: str) -> Labels:
    """Labels of the sorted ``ids`` from (id, class indices) pairs; the two sets of videos must be equal."""
    per_row: list[Any] = [None] * len(ids)
    extra: list[str] = []
    for vid, labels in videos:
        vid = vid.decode("utf-8") if isinstance(vid, bytes) else str(vid)
        row = int(np.searchsorted(ids, vid.encode("utf-8")))
        if row >= len(ids) or ids[row] != vid.encode("utf-8"):
            extra.append(vid)
            continue
        per_row[row] = np.asarray(labels, dtype=np.int64).ravel()
    absent = [ids[i].decode() for i, v in enumerate(per_row) if v is None]
    if extra or absent:
        parts = []
        if absent:
            parts.append(
                f"{len(absent)} predicted videos are not in it (e.g. {', '.join(map(repr, absent[:3]))})"
            )
        if extra:
            parts.append(
                f"{len(extra)} of its videos are not predicted (e.g. {', '.join(map(repr, extra[:3]))})"
            )
        raise DataError(f"{where}: the labelled data and the predictions differ: {'; '.join(parts)}")
    counts = np.array([len(v) for v in per_row], dtype=np.int64)
    indices = np.concatenate(per_row) if per_row else np.zeros(0, np.int64)
    if indices.size and (indices.min() < 0 or indices.max() >= num_classes):
        raise DataError(f"{where}: a label is outside 0 .. {num_classes - 1}")
    return Labels(np.concatenate([[0], np.cumsum(counts)]), indices, num_classes)


def score_table(table: TopKTable, labels: Labels, new_metric: Callable[[], Any]) -> dict[str, float]:
    """The metric plugin's results for ``table`` (classes it does not list are not predicted)."""
    metric = new_metric()
    for lo in range(0, len(table), BLOCK):
        hi = min(len(table), lo + BLOCK)
        classes, probs = table.classes[lo:hi], table.probs[lo:hi]
        _update(metric, classes, np.where(classes >= 0, probs, -np.inf), labels.dense(lo, hi))
    return metric.compute()


def _update(metric: Any, classes: np.ndarray, scores: np.ndarray, labels: np.ndarray) -> None:
    """``update_ranked`` when the metric has it, else a dense score matrix (unlisted classes score -inf...
    or 0 for metrics that need finite scores)."""
    from zoo.contracts import RankedMetric

    if isinstance(metric, RankedMetric):
        metric.update_ranked(classes.astype(np.int64), scores, labels)
        return
    dense = np.zeros(labels.shape, dtype=np.float32)
    rows = np.broadcast_to(np.arange(len(classes))[:, None], classes.shape)
    listed = np.isfinite(scores) & (classes >= 0)
    dense[rows[listed], classes[listed]] = scores[listed]
    metric.update(dense, labels)


def fit_weights(
    tables: Sequence[TopKTable],
    labels: Labels,
    new_metric: Callable[[], Any],
    *,
    mean: str = "arithmetic",
    missing: str = "floor",
    log: Callable[[str], None] = lambda _m: None,
) -> tuple[np.ndarray, float]:
    """Weights maximizing the metric's headline on ``tables`` (see the module docstring) and that score."""
    _check_rule(mean, missing)
    check_same_videos(tables)
    n, m = len(tables[0]), len(tables)
    blocks = [member_values(tables, lo, min(n, lo + BLOCK), missing) for lo in range(0, n, BLOCK)]
    if mean == "geometric":
        blocks = [(c, np.log(np.maximum(v, LOG_EPSILON)), k) for c, v, k in blocks]
    dense = [labels.dense(lo, min(n, lo + BLOCK)) for lo in range(0, n, BLOCK)]
    headline = new_metric().headline

    def score(w: np.ndarray) -> float:
        metric = new_metric()
        wf = w.astype(np.float32)[:, None, None]
        for (cand, values, keep), lab in zip(blocks, dense):
            mixed = (values * wf).sum(axis=0)
            if mean == "geometric":
                mixed = np.exp(mixed)
            _update(metric, cand, np.where(keep, mixed, -np.inf), lab)
        return float(metric.compute()[headline])

    starts = [np.eye(m)[i] for i in range(m)] + [np.full(m, 1.0 / m)]
    scored = [(score(w), i, w) for i, w in enumerate(starts)]
    best_score, _, best = max(scored, key=lambda s: (s[0], -s[1]))  # ties: the earliest start
    evaluations = len(starts)
    for step in FIT_STEPS:
        improved = True
        while improved:
            improved = False
            for i in range(m):
                for sign in (1, -1):
                    w = best.copy()
                    if sign > 0:
                        w = (1 - step) * w
                        w[i] += step
                    elif w[i] > 0 and w.sum() - w[i] > 0:
                        w[i] = max(0.0, w[i] - step)
                        w /= w.sum()
                    else:
                        continue
                    value = score(w)
                    evaluations += 1
                    if value > best_score + 1e-12:
                        best_score, best, improved = value, w, True
        log(f"fit: step {step}: {headline} {best_score:.5f}, weights {np.round(best, 3).tolist()}")
    log(f"fit: {evaluations} evaluations")
    return best, best_score


def save_weights(path: Path, sources: Sequence[str], weights: np.ndarray, **info: Any) -> None:
    from zoo.atomic import atomic_write_text

    record = {"members": list(sources), "weights": [float(w) for w in weights], **info}
    atomic_write_text(path, json.dumps(record, indent=1))


def load_weights(path: str | Path, count: int) -> list[float]:
    """Weights from a ``weights.json`` written by ``zoo ensemble`` (or a JSON list)."""
    path = Path(path)
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise UsageError(f"--weights-of {path}: cannot read a weights JSON file ({exc})") from None
    weights = record.get("weights") if isinstance(record, dict) else record
    if not isinstance(weights, list) or not all(isinstance(w, (int, float)) for w in weights):
        raise UsageError(f"--weights-of {path}: expected a JSON list of numbers or an object with 'weights'")
    check_weights(weights, count, f"--weights-of {path}")
    return [float(w) for w in weights]


# -- members: run directories and prediction files -------------------------------------------------------


def is_run_dir(path: str | Path) -> bool:
    """A member that holds a model to predict with: a run directory of `zoo train`, one of its checkpoints
    (``RUN/checkpoints/step-N``) or an export of `zoo export`."""
    return _member_config(Path(path)) is not None


def _member_config(path: Path) -> tuple[dict[str, Any], str] | None:
    """The config of a model member and where it comes from: a run's config.json (for a checkpoint, the
    run's, two folders up), or an export's metadata.json; None when ``path`` is none of them."""
    if not path.is_dir():
        return None
    run = path if (path / "config.json").is_file() else path.parent.parent
    if (run / "config.json").is_file() and (run == path or path.parent.name == "checkpoints"):
        return json.loads((run / "config.json").read_text()), str(run / "config.json")
    metadata = path / "metadata.json"
    if metadata.is_file():  # checked in full when the export is opened (zoo.engine.export)
        try:
            config = json.loads(metadata.read_text(encoding="utf-8")).get("config")
        except (OSError, UnicodeError, ValueError, AttributeError) as exc:
            raise DataError(
                f"{metadata}: not readable export metadata ({exc}); re-export with `zoo export`"
            ) from None
        if not isinstance(config, dict):
            raise DataError(f"{metadata}: no saved config; re-export with `zoo export`")
        return config, f"{metadata} (exported config)"
    return None


def run_config(run_dir: str | Path, data_from: Any = None) -> Any:
    """A run's saved config, with the data splits of ``data_from`` (a ZooConfig) when given."""
    from zoo.config import load_config

    found = _member_config(Path(run_dir))
    if found is None:
        raise UsageError(
            f"{run_dir}: not a run directory, checkpoint or export (no config.json or metadata.json)"
        )
    raw, source = found
    cfg = load_config(None, raw=raw, source=source)
    if data_from is not None:
        splits = {s: getattr(data_from.data, s) for s in ("train", "valid", "test", "infer")}
        cfg = cfg.with_overrides({"data": splits}, "the ensemble's data")
    return cfg


def predict_run(
    run_dir: str | Path,
    cfg: Any,
    split: str,
    top_k: int,
    *,
    progress: bool = True,
    open_export: Callable[[str], Any] | None = None,
) -> TopKTable:
    """Predict ``split`` of ``cfg``'s data with the weights of ``run_dir`` (its own model config); an export
    directory is predicted by ``open_export(path)``, its scorer (``zoo ensemble`` passes Paddle Inference's)."""
    from zoo.engine.build import build_model, build_reader
    from zoo.engine.infer.loops import dygraph_scorer, predict
    from zoo.engine.runs.weights import apply_weights, read_weights

    run_cfg = run_config(run_dir, cfg)
    if run_cfg.dataset.num_classes != cfg.dataset.num_classes:
        raise DataError(
            f"{run_dir}: the run has {run_cfg.dataset.num_classes} classes, the ensemble "
            f"{cfg.dataset.num_classes}; members must share the class count"
        )
    if (Path(run_dir) / "metadata.json").is_file() and not (Path(run_dir) / "config.json").is_file():
        if open_export is None:
            raise UsageError(
                f"{run_dir}: an export member needs a way to run it (zoo ensemble opens exports)"
            )
        scorer = open_export(str(run_dir))  # an export: its own predictor, as `zoo predict --model`
    else:
        model = build_model(run_cfg)
        apply_weights(model, read_weights(str(run_dir)), strict=True)
        scorer = dygraph_scorer(model, run_cfg.dataset.features)
    rows = predict(
        scorer,
        build_reader(run_cfg, split),
        run_cfg,
        top_k=top_k,
        batch_size=max(run_cfg.predict.batch_size, run_cfg.eval.batch_size),
        progress=progress,
    )
    return TopKTable.from_predictions(str(run_dir), rows)


def load_member(
    source: str,
    cfg: Any,
    split: str,
    top_k: int,
    *,
    progress: bool = True,
    open_export: Callable[[str], Any] | None = None,
) -> TopKTable:
    """A run directory, checkpoint or export (predicted over ``split``; see :func:`predict_run`) or a
    prediction file, checked against the class count; any of them may be an ``s3://`` or ``gs://`` URL
    (fetched once into the cache)."""
    from zoo.engine.runs.weights import local_copy

    source = local_copy(source)
    if is_run_dir(source):
        if cfg is None:
            raise UsageError(f"{source}: a run member needs data to predict: give --config or --data")
        table = predict_run(source, cfg, split, top_k, progress=progress, open_export=open_export)
    elif Path(source).is_dir():
        raise UsageError(
            f"{source}: a directory that is not a run directory of `zoo train` (no config.json), one of its "
            f"checkpoints (RUN/checkpoints/step-N) or an export of `zoo export` (no metadata.json)"
        )
    else:
        table = read_prediction_file(source, cfg.dataset.num_classes if cfg is not None else None)
    if cfg is not None:
        table.check_classes(cfg.dataset.num_classes)
    return table


def split_labels(cfg: Any, split: str, ids: np.ndarray) -> Labels | None:
    """Labels of ``split`` aligned to ``ids``; None when the split has no labels (YouTube-8M's test)."""
    from zoo.engine.build import build_reader, split_paths

    if cfg is None or not split_paths(cfg, split):
        return None
    videos = [(v["id"], v.get("labels")) for v in build_reader(cfg, split)]
    if not videos or any(labels is None for _, labels in videos):
        return None
    pairs = [(vid, _label_indices(labels, cfg.dataset.num_classes)) for vid, labels in videos]
    if not any(len(labels) for _, labels in pairs):
        return None
    return labels_for(
        ids, pairs, cfg.dataset.num_classes, f"the {split} split ({', '.join(split_paths(cfg, split))})"
    )


def _label_indices(labels: Any, num_classes: int) -> np.ndarray:
    arr = np.asarray(labels)
    if arr.dtype.kind in "fb" and arr.shape == (num_classes,):
        return np.flatnonzero(arr)
    return arr.astype(np.int64).ravel()

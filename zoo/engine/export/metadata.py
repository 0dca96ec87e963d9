"""An export directory's metadata: its format, files and inputs, its vocabulary, and the checks on load.

``metadata.json`` records the model name, config, class count, feature layout, frame mode, each file's size
and SHA-256 and the export check's result; :func:`read_metadata` refuses a file that is not one, or one whose
parts disagree, with a message naming the file and what to do.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from zoo.config import ZooConfig
from zoo.errors import UsageError, ZooError
from zoo.fetch import sha256_file

FORMAT = "yt8m-zoo-export"
FORMAT_VERSION = 1
PROGRAM_FILE = "inference.json"
PARAMS_FILE = "inference.pdiparams"
METADATA_FILE = "metadata.json"
VOCABULARY_FILE = "vocabulary.csv"


def input_names(features: Sequence[str]) -> list[str]:
    """The exported program's inputs, in order: every feature, then the mask and the frame counts."""
    return [*features, "mask", "num_frames"]


def file_record(path: Path) -> dict[str, Any]:
    return {"bytes": path.stat().st_size, "sha256": sha256_file(path)}


def zoo_version() -> str:
    import zoo

    return zoo.__version__


def check_output_dir(output: Path) -> None:
    """Only an empty directory or an earlier export may be replaced (never a run directory or a file)."""
    if not output.exists():
        return
    hint = "choose another --output or remove it first"
    if not output.is_dir():
        raise UsageError(f"--output {output} is a file; {hint}")
    if not any(output.iterdir()):
        return
    try:
        earlier = json.loads((output / METADATA_FILE).read_text(encoding="utf-8")).get("format") == FORMAT
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError):
        earlier = False
    if not earlier:
        raise UsageError(
            f"--output {output} exists and is not an earlier `zoo export` (no {METADATA_FILE} of "
            f"one); it would be replaced as a whole: {hint}"
        )


def read_vocabulary(
    vocabulary: str | os.PathLike | None, cfg: ZooConfig
) -> tuple[dict[int, str], Path | None]:
    """--vocabulary, else the config's predict.vocabulary if that file exists; checked against the classes."""
    from zoo.engine.infer.predictions import load_class_names

    if vocabulary is None:
        configured = cfg.predict.vocabulary
        if not configured or not Path(configured).is_file():
            return {}, None
        vocabulary = configured
    path = Path(vocabulary)
    if not path.is_file():
        raise UsageError(f"--vocabulary {path}: no such file (expected the YouTube-8M vocabulary.csv)")
    mapping = load_class_names(path)
    beyond = sorted(k for k in mapping if k >= cfg.dataset.num_classes)
    if beyond:
        raise UsageError(
            f"{path}: names class {beyond[0]} but the model has {cfg.dataset.num_classes} classes "
            f"(0..{cfg.dataset.num_classes - 1}); is this the vocabulary of this dataset?"
        )
    return mapping, path


def read_metadata(model_dir: str | os.PathLike) -> dict[str, Any]:
    """``metadata.json`` of an export directory, checked for format, version and consistency."""
    root = Path(model_dir)
    redo = "re-export it with `zoo export`"
    if not root.is_dir():
        raise ZooError(f"--model {root}: not a directory; give the directory written by `zoo export`")
    path = root / METADATA_FILE
    if not path.is_file():
        raise ZooError(f"{path} is missing: {root} is not a complete `zoo export` directory; {redo}")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ZooError(f"{path}: not readable JSON ({exc}); the export is damaged, {redo}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ZooError(f'{path}: not yt8m-zoo export metadata (no "format": "{FORMAT}"); {redo}')
    version = meta.get("version")
    if not isinstance(version, int) or version < 1:
        raise ZooError(f"{path}: invalid format version {version!r}; {redo}")
    if version > FORMAT_VERSION:
        raise ZooError(
            f"{path}: export format version {version} is newer than this yt8m-zoo reads "
            f"({FORMAT_VERSION}); upgrade yt8m-zoo or export again with this version"
        )
    required = {
        "model": str,
        "num_classes": int,
        "features": dict,
        "max_frames": int,
        "frames": str,
        "inputs": list,
        "config": dict,
        "files": dict,
    }
    for key, kind in required.items():
        if not isinstance(meta.get(key), kind):
            raise ZooError(
                f"{path}: key {key!r} is missing or not a {kind.__name__}; the metadata is damaged, {redo}"
            )
    features = meta["features"]
    if not features or not all(isinstance(d, int) and d > 0 for d in features.values()):
        raise ZooError(f"{path}: 'features' must map feature names to positive sizes, got {features}; {redo}")
    if meta["frames"] not in ("dynamic", "static"):
        raise ZooError(f'{path}: \'frames\' must be "dynamic" or "static", got {meta["frames"]!r}; {redo}')
    if meta["inputs"] != input_names(list(features)):
        raise ZooError(
            f"{path}: 'inputs' {meta['inputs']} do not match the features {list(features)}; {redo}"
        )
    config = meta["config"]
    config_model = (config.get("model") or {}).get("name")
    if config_model != meta["model"]:
        raise ZooError(
            f"{path}: the metadata names model {meta['model']!r} but its config builds "
            f"{config_model!r}; the file was edited or mixed from two exports, {redo}"
        )
    dataset = config.get("dataset") or {}
    for key in ("num_classes", "features", "max_frames"):
        if dataset.get(key) != meta[key]:
            raise ZooError(
                f"{path}: {key} is {meta[key]!r} but the saved config's dataset.{key} is "
                f"{dataset.get(key)!r}; the metadata is inconsistent, {redo}"
            )
    return meta


def check_files(root: Path, meta: dict[str, Any], *, verify_checksums: bool) -> None:
    check_file_records(
        root, meta, (PROGRAM_FILE, PARAMS_FILE), "re-export it with `zoo export`", verify_checksums
    )


def check_file_records(
    root: Path, meta: dict[str, Any], names: tuple[str, ...], redo: str, verify_checksums: bool
) -> None:
    """Each of ``names`` exists in ``root`` with the size (and SHA-256) that ``metadata.json`` records."""
    for name in names:
        path = root / name
        record = meta["files"].get(name)
        if not path.is_file():
            raise ZooError(f"{path} is missing: the export in {root} is incomplete; {redo}")
        if not isinstance(record, dict):
            raise ZooError(f"{root / METADATA_FILE}: no entry for {name} under 'files'; {redo}")
        size = path.stat().st_size
        if size != record.get("bytes"):
            raise ZooError(
                f"{path} has {size} bytes, the export wrote {record.get('bytes')}: the file is "
                f"damaged or from another export; {redo}"
            )
        if verify_checksums and sha256_file(path) != record.get("sha256"):
            raise ZooError(
                f"{path}: SHA-256 does not match {METADATA_FILE}: the file is damaged or from "
                f"another export; {redo}"
            )

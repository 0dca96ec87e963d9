"""From a validated config to the objects a run needs: data splits, readers, model, metric."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import zoo
from zoo import storage
from zoo.config import ZooConfig
from zoo.contracts import SampleDataReader
from zoo.errors import UsageError
from zoo.paths import cache_dir
from zoo.storage import redact

SAMPLE_VERSION = "sample-v1"
SPLITS = ("train", "valid", "test", "infer")
FALLBACKS = {
    "train": ["train"],
    "valid": ["valid"],
    "test": ["test", "valid"],
    "infer": ["infer", "test", "valid"],
}


def split_paths(cfg: ZooConfig, split: str) -> list[str] | None:
    """Paths of a split, with the fall-backs test <- valid and infer <- test."""
    data = cfg.data
    for name in FALLBACKS[split]:
        paths = getattr(data, name)
        if paths:
            for path in paths:
                if storage.was_redacted(path):
                    raise UsageError(
                        f"data.{name} is {path}: a URL saved without its credentials (a run's config.json "
                        f"never keeps them), so it cannot be read as it is. Give the data again, with its "
                        f"credentials: -o 'data.{name}=[URL]', --data URL (or --filelist URL for zoo predict); or "
                        f"keep credentials out of URLs: the store's own environment variables and credential "
                        f"files are used"
                    )
            return paths
    return None


def uses_sample_data(cfg: ZooConfig) -> bool:
    return not any(getattr(cfg.data, s) for s in SPLITS)


def with_sample_data(cfg: ZooConfig, *, quiet: bool = False) -> ZooConfig:
    """Point ``cfg`` at the built-in sample dataset (made on first use) and apply its ``sample`` section."""
    reader_cls = zoo.plugin_class("reader", cfg.data.reader)
    if not isinstance(reader_cls, SampleDataReader):
        raise UsageError(
            f"reader {cfg.data.reader!r} has no built-in sample data; give data paths "
            f"(--data DIR or -o data.train=...)"
        )
    root = cache_dir(SAMPLE_VERSION)
    if not quiet:
        print(f"using the built-in sample dataset in {root} (made on first use)", file=sys.stderr)
    info = reader_cls.sample_data(root)
    patch: dict[str, Any] = {section: dict(values) for section, values in cfg.sample.items()}
    patch.setdefault("dataset", {})["num_classes"] = int(info["num_classes"])
    patch.setdefault("data", {}).update(
        {"train": info["train"], "valid": info["valid"], "test": info["test"]}
    )
    if info.get("vocabulary") and cfg.predict.vocabulary is None:
        patch.setdefault("predict", {})["vocabulary"] = str(info["vocabulary"])
    # the user's -o overrides rank above the sample section: what they typed wins
    return cfg.with_overrides(patch, "built-in sample data", under_user=True)


def with_data_dir(cfg: ZooConfig, root: str, *, keep_infer: bool = False) -> ZooConfig:
    """``--data DIR``: DIR/train, DIR/valid (or validate), DIR/test hold the splits' files (DIR may be an
    ``s3://``, ``gs://`` or ``http(s)://`` prefix)."""
    from zoo import storage

    if storage.is_url(root):
        return with_remote_data_dir(cfg, root, keep_infer=keep_infer)
    base = Path(root)
    if not base.is_dir():
        raise UsageError(
            f"--data {root}: not a directory (expected train/, valid/ and optionally test/ in it)"
        )
    found: dict[str, list[str]] = {}
    for split, names in {"train": ["train"], "valid": ["valid", "validate", "val"], "test": ["test"]}.items():
        for name in names:
            if (base / name).exists():
                found[split] = [str(base / name)]
                break
    if "train" not in found and "valid" not in found:
        raise UsageError(f"--data {root}: no train/ or valid/ (validate/) folder inside")
    # Every split comes from DIR: a split DIR lacks falls back inside DIR (test <- valid), never to paths
    # from the config (for `zoo eval --weights RUN --data DIR`, the split saved in the run).
    splits = {split: found.get(split) for split in SPLITS}
    if keep_infer:  # predict --filelist: named explicitly
        splits.pop("infer")
    patch: dict[str, Any] = {"data": splits}
    patch.update(manifest_classes(cfg, base / "manifest.json", f"--data {root}"))
    return cfg.with_overrides(patch, f"--data {root}", under_user=True)  # an -o (zoo bench's) still wins


def manifest_classes(cfg: ZooConfig, manifest: Path, where: str) -> dict[str, Any]:
    """The class count the data states (``manifest.json`` of `zoo data synth`), as a config patch: taken when
    the config does not state one (and said); a config stating fewer classes is refused (the data's labels
    would not fit), more is a warning. ``{}`` without a manifest."""
    if not manifest.is_file():
        return {}
    try:
        classes = json.loads(manifest.read_text(encoding="utf-8")).get("num_classes")
    except (OSError, UnicodeError, ValueError, AttributeError) as exc:
        raise UsageError(f"{manifest}: not a readable JSON manifest ({exc}); fix or remove it") from None
    if classes is None:
        return {}
    if not isinstance(classes, int) or isinstance(classes, bool) or classes < 1:
        raise UsageError(f"{manifest}: num_classes must be a positive integer, got {classes!r}")
    configured = cfg.dataset.num_classes
    if "num_classes" not in (cfg.raw.get("dataset") or {}):
        if classes != configured:
            print(
                f"{where}: {classes} classes (its manifest.json; the dataset preset says {configured})",
                file=sys.stderr,
            )
        return {"dataset": {"num_classes": classes}}
    if classes > configured:
        raise UsageError(
            f"{where}: its manifest.json says {classes} classes, the config's dataset.num_classes is "
            f"{configured}, so labels of the data would not fit the model; train with "
            f"-o dataset.num_classes={classes} (or use data of {configured} classes)"
        )
    if classes != configured:
        print(
            f"warning: {where}: its manifest.json says {classes} classes, the config's dataset.num_classes is "
            f"{configured}: the model has classes the data never labels",
            file=sys.stderr,
        )
    return {}


def with_remote_data_dir(cfg: ZooConfig, root: str, *, keep_infer: bool = False) -> ZooConfig:
    """``--data URL``: the prefixes train/, valid/ (or validate/, val/) and test/ under the URL."""
    from zoo import storage

    listed = {e.name: e.url for e in storage.listdir(root.rstrip("/") + "/") if not e.is_file}
    found: dict[str, list[str]] = {}
    for split, names in {"train": ["train"], "valid": ["valid", "validate", "val"], "test": ["test"]}.items():
        for name in names:
            if name in listed:
                found[split] = [listed[name].rstrip("/") + "/"]
                break
    if "train" not in found and "valid" not in found:
        raise UsageError(f"--data {storage.redact(root)}: no train/ or valid/ (validate/) prefix under it")
    splits = {split: found.get(split) for split in SPLITS}
    if keep_infer:
        splits.pop("infer")
    return cfg.with_overrides({"data": splits}, f"--data {storage.redact(root)}", under_user=True)


def check_data_sources(data_dir: str | None, overrides: list[str]) -> None:
    """``--data DIR`` and ``-o data.train=...`` both name data: refuse rather than pick one silently."""
    from zoo.config import parse_override

    if not data_dir:
        return
    for text in overrides:
        keys, value = parse_override(text)
        names_paths = (len(keys) == 2 and keys[0] == "data" and keys[1] in SPLITS) or (
            keys == ["data"] and isinstance(value, dict) and any(s in value for s in SPLITS)
        )
        if names_paths:
            raise UsageError(
                f"--data {data_dir} and -o {text} both say where the data is; give one of them "
                f"(--data DIR takes train/, valid/ and test/ from DIR)"
            )


def describe_split(cfg: ZooConfig, split: str) -> str:
    """Which data a split reads, e.g. "data.valid (data.test is not set): /data/validate"."""
    chain = {
        "train": ["train"],
        "valid": ["valid"],
        "test": ["test", "valid"],
        "infer": ["infer", "test", "valid"],
    }
    for name in chain[split]:
        paths = getattr(cfg.data, name)
        if paths:
            shown = ", ".join(redact(p) for p in paths[:3]) + (
                f" and {len(paths) - 3} more" if len(paths) > 3 else ""
            )
            why = "" if name == split else f" (data.{split} is not set)"
            return f"data.{name}{why}: {shown}"
    return f"data.{split}: not set"


def ensure_data(
    cfg: ZooConfig, data_dir: str | None = None, *, quiet: bool = False, keep_infer: bool = False
) -> ZooConfig:
    if data_dir:
        return with_data_dir(cfg, data_dir, keep_infer=keep_infer)
    if uses_sample_data(cfg):
        return with_sample_data(cfg, quiet=quiet)
    # data named in the config: the manifest of the folder holding the first train (else valid) path
    first = (cfg.data.train or cfg.data.valid or [""])[0]
    if first and "://" not in first and not any(c in first for c in "*?["):
        path = Path(first)
        folder = path.parent if path.is_dir() else path.parent.parent
        patch = manifest_classes(cfg, folder / "manifest.json", f"data ({first})")
        if patch:
            return cfg.with_overrides(patch, f"{folder / 'manifest.json'}", under_user=True)
    return cfg


def build_reader(cfg: ZooConfig, split: str) -> Any:
    paths = split_paths(cfg, split)
    if not paths:
        raise UsageError(
            f"no data for the {split} split: set data.{split} in the config (or -o data.{split}=PATH)"
        )
    return zoo.build_reader(cfg.data.reader, spec=cfg.dataset, paths=list(paths), **cfg.reader)


def build_model(cfg: ZooConfig) -> Any:
    return zoo.build_model(cfg.model_name, spec=cfg.dataset, **cfg.model)


def build_metric(cfg: ZooConfig) -> Any:
    return zoo.build_metric(cfg.eval.metric, spec=cfg.dataset, **cfg.metric)


def count_parameters(model: Any) -> int:
    return sum(int(p.size) for p in model.parameters() if not p.stop_gradient)

"""From a validated config to the objects a run needs: data splits, readers, model, metric."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import zoo
from zoo.config import ZooConfig
from zoo.contracts import SampleDataReader
from zoo.errors import UsageError
from zoo.paths import cache_dir

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
    return cfg.with_overrides(patch, "built-in sample data")


def with_data_dir(cfg: ZooConfig, root: str, *, keep_infer: bool = False) -> ZooConfig:
    """``--data DIR``: DIR/train, DIR/valid (or validate), DIR/test hold the splits' files."""
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
    return cfg.with_overrides({"data": splits}, f"--data {root}")


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
            shown = ", ".join(paths[:3]) + (f" and {len(paths) - 3} more" if len(paths) > 3 else "")
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

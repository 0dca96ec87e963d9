"""Which keys of a frame-level ``SequenceExample`` hold the id, the labels and each feature.

Three layouts are in use on disk:

- ``yt8m``: the YouTube-8M releases. Context ``id`` (2018+) or ``video_id`` (2017), ``labels`` (int64);
  feature lists named like the features (``rgb``, ``audio``), one quantized bytes value per frame (some
  exports write the same keys with float lists).
- ``mediapipe``: MediaPipe's YouTube-8M extraction graph (``PackMediaSequenceCalculator`` with
  ``FLOAT_FEATURE_RGB`` / ``FLOAT_FEATURE_AUDIO``), MediaSequence keys: feature lists
  ``RGB/feature/floats`` and ``AUDIO/feature/floats`` (one float list per frame, unquantized), labels in
  ``clip/label/index``, the id in ``example/id``, else ``clip/media_id``, else ``clip/data_path`` (the
  extraction metadata sets only the data path).
- ``auto``: per record, the first key of either layout that is present.

Explicit keys (``feature_keys``, ``id_key``, ``label_key``) replace the candidates of any layout. The
resolution is a few dict lookups per record; nothing is decided per file, so mixed files read as well.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

LAYOUTS = ("auto", "yt8m", "mediapipe")
DTYPES = ("auto", "uint8", "float32")

YT8M_ID_KEYS = ("id", "video_id")
YT8M_LABEL_KEYS = ("labels",)
MEDIAPIPE_ID_KEYS = ("example/id", "clip/media_id", "clip/data_path")
MEDIAPIPE_LABEL_KEYS = ("clip/label/index",)


def mediapipe_feature_key(name: str) -> str:
    """MediaSequence's key for the float features packed under the prefix ``NAME`` (rgb -> RGB/feature/floats)."""
    return f"{name.upper()}/feature/floats"


@dataclass(frozen=True)
class Layout:
    """The candidate keys, in order, for one reader configuration."""

    name: str
    id_keys: tuple[str, ...]
    label_keys: tuple[str, ...]
    feature_keys: dict[str, tuple[str, ...]]
    dtype: str = "auto"
    align: str = "auto"

    def describe(self, id_key: str | None, label_key: str | None, keys: dict[str, str]) -> str:
        """The layout the keys one record used belong to: ``yt8m``, ``mediapipe`` or ``custom``."""
        if (
            all(key == name for name, key in keys.items())
            and id_key in (*YT8M_ID_KEYS, None)
            and label_key in (*YT8M_LABEL_KEYS, None)
        ):
            return "yt8m"
        if (
            all(key == mediapipe_feature_key(name) for name, key in keys.items())
            and id_key in (*MEDIAPIPE_ID_KEYS, None)
            and label_key in (*MEDIAPIPE_LABEL_KEYS, None)
        ):
            return "mediapipe"
        return "custom"


def resolve_layout(config: Any, features: dict[str, int]) -> Layout:
    """The :class:`Layout` for a reader ``config`` (its ``layout``, ``feature_keys``, ``id_key``,
    ``label_key``, ``dtype`` and ``align`` options; a Config without them reads with ``auto``)."""
    from zoo.errors import ConfigError

    name = getattr(config, "layout", "auto") or "auto"
    if name not in LAYOUTS:
        raise ConfigError(f"data.layout: expected one of {', '.join(LAYOUTS)}, got {name!r}")
    dtype = getattr(config, "dtype", "auto") or "auto"
    if dtype not in DTYPES:
        raise ConfigError(f"data.dtype: expected one of {', '.join(DTYPES)}, got {dtype!r}")
    explicit = dict(getattr(config, "feature_keys", None) or {})
    unknown = sorted(set(explicit) - set(features))
    if unknown:
        raise ConfigError(
            f"data.feature_keys: {', '.join(repr(u) for u in unknown)} not in dataset.features "
            f"({', '.join(features)}); name the dataset's features, e.g. feature_keys: {{rgb: RGB/feature/floats}}"
        )
    yt8m = name in ("auto", "yt8m")
    mediapipe = name in ("auto", "mediapipe")
    id_keys = (YT8M_ID_KEYS if yt8m else ()) + (MEDIAPIPE_ID_KEYS if mediapipe else ())
    label_keys = (YT8M_LABEL_KEYS if yt8m else ()) + (MEDIAPIPE_LABEL_KEYS if mediapipe else ())
    if getattr(config, "id_key", None):
        id_keys = (config.id_key,)
    if getattr(config, "label_key", None):
        label_keys = (config.label_key,)
    feature_keys = {}
    for feature in features:
        if feature in explicit:
            feature_keys[feature] = (explicit[feature],)
        else:
            feature_keys[feature] = ((feature,) if yt8m else ()) + (
                (mediapipe_feature_key(feature),) if mediapipe else ()
            )
    align = getattr(config, "align", "auto") or "auto"
    return Layout(name, id_keys, label_keys, feature_keys, dtype, align)

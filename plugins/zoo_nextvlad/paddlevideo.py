"""PaddleVideo 1.x ``NEXTVLAD`` weights <-> this plugin's NeXtVLAD state dict.

PaddleVideo 1.x (PaddlePaddle/models, ``PaddleCV/PaddleVideo/models/nextvlad``) built NeXtVLAD as a fluid
static graph. Its ``NEXTVLAD_final.pdparams`` is a dict of arrays keyed by the graph's parameter names:

==========================================  =====================================  ================
PaddleVideo 1.x name                        this model                             layout
==========================================  =====================================  ================
``{video,audio}_fc_expansion_w`` / ``_b``   ``branches.{rgb,audio}.expansion``     [D, 2D] / [2D]
``{video,audio}_fc_group_attention_w/_b``   ``branches.*.group_attention``         [2D, G] / [G]
``{video,audio}_cluster_weights``           ``branches.*.cluster_weights``         [2D, G*K]
``{video,audio}_cluster_weights2``          ``branches.*.cluster_weights2``        [K, 2D/G]
``batch_norm_{0,2}.*`` (frame BN)           ``branches.{rgb,audio}.cluster_bn``    [G*K]
``batch_norm_{1,3}.*`` (VLAD BN)            ``branches.{rgb,audio}.vlad_bn``       [K*2D/G]
``hidden1_fc_weights``                      ``hidden.weight``                      [sum, H]
``batch_norm_4.*``                          ``hidden_bn``                          [H]
``gating_fc1_weights`` / ``gating_fc2_...``  ``gating.squeeze`` / ``gating.excite``  [H, H/r] / [H/r, H]
``batch_norm_5.*``                          ``gating.bn``                          [H/r]
``logits_clf_weights`` / ``logits_clf_bias``  ``head.fc.weight`` / ``head.fc.bias``  [H, C] / [C]
``eigen_param``                             ``branches.rgb.input_scale``           [1024]
==========================================  =====================================  ================

BatchNorm layers had no names, so fluid numbered them in graph-building order (rgb branch, audio branch,
hidden, gating); each has ``.w_0`` (scale), ``.b_0`` (shift), ``.w_1`` (running mean) and ``.w_2``
(running variance). fluid's fc weights are ``[in, out]`` like ``paddle.nn.Linear``: nothing is transposed.

Two values change so that the converted model computes exactly what PaddleVideo computed:

* PaddleVideo dequantized rgb as ``x*4/255 - 2`` (no half-bin offset; audio got ``+ 4/512``), while our
  readers give ``x*4/255 - 2 + 4/512`` for every feature. The constant difference, after reverse whitening
  ``* eigen_param``, is absorbed into the expansion bias: ``b = b_1x - (4/512 * eigen_param) @ W``.
* fluid's dropout was ``downgrade_in_infer`` (training keeps kept units unscaled, inference multiplies by
  ``1 - p``); paddle's is ``upscale_in_train``. Scaling ``hidden1_fc_weights`` by ``1 - p`` makes both
  training and inference identical.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from zoo.errors import DataError

RGB_OFFSET = 4.0 / 512  # the half-bin offset our dequantization adds and PaddleVideo's rgb lacked
BRANCHES = (("video", "rgb", 0), ("audio", "audio", 2))  # 1.x prefix, our feature, first BatchNorm index
BN_SUFFIXES = {"w_0": "weight", "b_0": "bias", "w_1": "_mean", "w_2": "_variance"}


def _name_map(rgb: str = "rgb", audio: str = "audio") -> dict[str, str]:
    """PaddleVideo 1.x parameter name -> our state dict key (everything except the folded values)."""
    ours = {"rgb": rgb, "audio": audio}
    names: dict[str, str] = {}
    for prefix, feature, bn in BRANCHES:
        branch = f"branches.{ours[feature]}"
        names[f"{prefix}_fc_expansion_w"] = f"{branch}.expansion.weight"
        names[f"{prefix}_fc_expansion_b"] = f"{branch}.expansion.bias"
        names[f"{prefix}_fc_group_attention_w"] = f"{branch}.group_attention.weight"
        names[f"{prefix}_fc_group_attention_b"] = f"{branch}.group_attention.bias"
        names[f"{prefix}_cluster_weights"] = f"{branch}.cluster_weights"
        names[f"{prefix}_cluster_weights2"] = f"{branch}.cluster_weights2"
        for index, layer in ((bn, "cluster_bn"), (bn + 1, "vlad_bn")):
            for suffix, attr in BN_SUFFIXES.items():
                names[f"batch_norm_{index}.{suffix}"] = f"{branch}.{layer}.{attr}"
    for index, layer in ((4, "hidden_bn"), (5, "gating.bn")):
        for suffix, attr in BN_SUFFIXES.items():
            names[f"batch_norm_{index}.{suffix}"] = f"{layer}.{attr}"
    names["hidden1_fc_weights"] = "hidden.weight"
    names["gating_fc1_weights"] = "gating.squeeze.weight"
    names["gating_fc2_weights"] = "gating.excite.weight"
    names["logits_clf_weights"] = "head.fc.weight"
    names["logits_clf_bias"] = "head.fc.bias"
    names["eigen_param"] = f"branches.{rgb}.input_scale"
    return names


def convert_state(
    state: Mapping[str, np.ndarray], *, dropout: float = 0.5, rgb: str = "rgb", audio: str = "audio"
) -> tuple[dict[str, np.ndarray], list[str]]:
    """Map a PaddleVideo 1.x NEXTVLAD parameter dict onto our state dict keys.

    ``dropout`` is the rate the weights were trained with (PaddleVideo's ``drop_rate``, 0.5); ``rgb`` and
    ``audio`` name our features that PaddleVideo called ``video`` and ``audio``. Returns the mapped arrays
    (float32) and the sorted 1.x keys that were not used (optimizer state, learning-rate counters, ...).
    Both branches get ``input_scale`` (rgb: the archive's eigen_param, else ones; audio: ones).
    """
    names = _name_map(rgb, audio)
    mapped = {names[key]: np.asarray(value, dtype=np.float32) for key, value in state.items() if key in names}
    unused = sorted(key for key in state if key not in names)
    scale_key = names["eigen_param"]
    weight_key, bias_key = names["video_fc_expansion_w"], names["video_fc_expansion_b"]
    if weight_key in mapped:
        weight = mapped[weight_key]
        scale = mapped.get(scale_key, np.ones(weight.shape[0], np.float32)).reshape(-1)
        mapped[scale_key] = scale
        if bias_key in mapped:
            shift = (RGB_OFFSET * scale.astype(np.float64)) @ weight.astype(np.float64)
            mapped[bias_key] = (mapped[bias_key].astype(np.float64) - shift).astype(np.float32)
    audio_weight = mapped.get(names["audio_fc_expansion_w"])
    if audio_weight is not None:
        mapped[f"branches.{audio}.input_scale"] = np.ones(audio_weight.shape[0], np.float32)
    if "hidden.weight" in mapped:
        mapped["hidden.weight"] = mapped["hidden.weight"] * np.float32(1.0 - dropout)
    return mapped, unused


def to_paddlevideo_state(
    state: Mapping[str, object], *, dropout: float = 0.5, rgb: str = "rgb", audio: str = "audio"
) -> dict[str, np.ndarray]:
    """The inverse of :func:`convert_state`: our state dict (tensors or arrays) -> PaddleVideo 1.x names.

    Raises :class:`DataError` if the state holds something PaddleVideo 1.x cannot express (a MoE head,
    other features, reverse whitening of audio).
    """
    arrays = {key: _to_numpy(value) for key, value in state.items()}
    names = {ours: theirs for theirs, ours in _name_map(rgb, audio).items()}
    audio_scale = arrays.pop(f"branches.{audio}.input_scale", None)
    if audio_scale is not None and not np.all(audio_scale == 1.0):
        raise DataError(f"branches.{audio}.input_scale is not all ones: PaddleVideo 1.x never rescales audio")
    extra = sorted(key for key in arrays if key not in names)
    if extra:
        raise DataError(
            f"PaddleVideo 1.x NEXTVLAD has no counterpart for {', '.join(extra[:5])}"
            f"{' ...' if len(extra) > 5 else ''}: it has rgb and audio branches and a logistic head only"
        )
    out = {names[key]: value.astype(np.float32) for key, value in arrays.items()}
    weight, bias = out.get("video_fc_expansion_w"), out.get("video_fc_expansion_b")
    if weight is not None and bias is not None:
        scale = out.get("eigen_param", np.ones(weight.shape[0], np.float32)).astype(np.float64)
        shift = (RGB_OFFSET * scale) @ weight.astype(np.float64)
        out["video_fc_expansion_b"] = (bias.astype(np.float64) + shift).astype(np.float32)
    if "hidden1_fc_weights" in out:
        out["hidden1_fc_weights"] = out["hidden1_fc_weights"] / np.float32(1.0 - dropout)
    return out


def _to_numpy(value: object) -> np.ndarray:
    if hasattr(value, "numpy"):
        return np.asarray(value.numpy())  # type: ignore[union-attr]
    return np.asarray(value)

"""The optimizer of a training run: Adam with the recipe's gradient clipping and L2 penalty.

Two recipe details differ between the references and are options here. Clipping: the starter code and
WILLOW clip each gradient tensor to ``gradient_clip_norm`` separately (``per_tensor``); PaddleVideo's recipe
clips the norm of all gradients together (``global``). L2: the starter and WILLOW penalise the classifier's
weights only (``classifier``, see :func:`zoo.nn.classifier_weights`); PaddleVideo every parameter (``all``).

Paddle clips the gradients of the loss first and adds the L2 term (``l2_penalty * w``) afterwards; TensorFlow's
starter differentiates loss + penalty and clips the sum. With penalties of 1e-8..1e-5 the difference is below
what clipping at 1.0 can notice, and it is the same in both clipping modes.

The default path uses only paddle's public API (``paddle.optimizer.Adam``, ``ClipGradByGlobalNorm`` /
``ClipGradByNorm``, ``L2Decay``). ``train.fused_update: true`` opts into :mod:`zoo.engine.train.update`, which
subclasses paddle's private optimizer and clip methods to clip and add the L2 term in place (paddle's own hold a
second copy of every gradient during the update: 356 MB at the reference NeXtVLAD size) and to fold both into
the Adam update (:class:`zoo.engine.train.update.FusedAdam`, one pass over each parameter instead of four, ~1.3x
per training step). Private methods change without notice, so that path runs only on the paddle versions it
was tested with (:data:`FUSED_PADDLE_TESTED`); on any other the public path runs, with a one-line notice.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from zoo.errors import ConfigError

CLIP_MODES = ("global", "per_tensor")
L2_SCOPES = ("all", "classifier")
FUSED_PADDLE_TESTED = ((3, 3), (3, 4))
"""``train.fused_update`` reaches into private paddle methods; it was tested with paddle >= 3.3, < 3.4."""


def paddle_version(text: str) -> tuple[int, int] | None:
    """``(major, minor)`` of a paddle version string; None for a development build ("0.0.0") or junk."""
    parts = text.split(".")
    try:
        version = int(parts[0]), int(parts[1])
    except (IndexError, ValueError):
        return None
    return None if version == (0, 0) else version


def private_update_supported(version: str) -> str | None:
    """None when the fused update may run on paddle ``version``; else why not (for the notice)."""
    low, high = FUSED_PADDLE_TESTED
    parsed = paddle_version(version)
    if parsed is None or not low <= parsed < high:
        return (
            f"it was tested with paddle >= {low[0]}.{low[1]}, < {high[0]}.{high[1]} and paddle {version} is "
            f"installed"
        )
    try:
        from zoo.engine.train import update  # noqa: F401 - imports paddle's private names
    except (ImportError, AttributeError) as exc:
        return f"paddle {version} lacks what it uses ({exc})"
    return None


def build_optimizer(
    model: Any, train_cfg: Any, in_place: bool | None = None, log: Callable[[str], None] = print
) -> Any:
    """Adam over ``model``'s parameters with ``train_cfg``'s learning rate, clipping and L2 penalty.

    ``in_place=None`` (what training uses): paddle's public ``grad_clip`` and ``weight_decay``, unless
    ``train_cfg.fused_update`` opts into the private path and the installed paddle is one it was tested with
    (else ``log`` gets a one-line notice and the public path runs). ``in_place=True`` forces the private path:
    the clip and L2 term inside the gradients (:class:`zoo.engine.train.update.InPlaceClipDecay`, bitwise
    paddle's update without its copy of every gradient), with ``fused_update`` inside the Adam update
    (:class:`zoo.engine.train.update.FusedAdam`); ``in_place=False`` forces the public path.
    """
    import paddle

    from zoo.nn import classifier_weights

    if in_place is None:
        in_place = False
        if train_cfg.fused_update:
            why_not = private_update_supported(paddle.__version__)
            if why_not is None:
                in_place = True
            else:
                log(f"train.fused_update: using paddle's public optimizer path instead: {why_not}")

    t = train_cfg
    if t.gradient_clip_mode not in CLIP_MODES:
        raise ConfigError(
            f"train.gradient_clip_mode must be one of {', '.join(CLIP_MODES)}, got {t.gradient_clip_mode!r}"
        )
    if t.l2_scope not in L2_SCOPES:
        raise ConfigError(f"train.l2_scope must be one of {', '.join(L2_SCOPES)}, got {t.l2_scope!r}")
    params = model.parameters()
    penalized = None  # None: every parameter
    if t.l2_penalty > 0 and t.l2_scope == "classifier":
        penalized = {id(p) for p in classifier_weights(model)}
        if not penalized:
            raise ConfigError(
                f"train.l2_scope is 'classifier' but model {type(model).__name__} has no zoo.nn.ClassifierHead "
                f"(build its classifier with zoo.nn.build_head or derive it from ClassifierHead), or set "
                f"train.l2_scope: all"
            )
    if in_place:
        from zoo.engine.train.update import FusedAdam, InPlaceClipDecay

        decay = {}
        if t.l2_penalty > 0:
            for p in params:
                # paddle lets a parameter's own regularizer replace the optimizer's; the classifier scope
                # replaces them all (below, as the paddle path does)
                own = getattr(p, "regularizer", None) if penalized is None else None
                if own is None and (penalized is None or id(p) in penalized):
                    decay[id(p)] = float(t.l2_penalty)
                if penalized is not None:
                    p.regularizer = None
        if t.fused_update:
            clip = InPlaceClipDecay(t.gradient_clip_norm, t.gradient_clip_mode, decay)
            return FusedAdam(learning_rate=t.learning_rate, parameters=params, grad_clip=clip)
        clip = None
        if t.gradient_clip_norm > 0 or decay:
            clip = InPlaceClipDecay(t.gradient_clip_norm, t.gradient_clip_mode, decay)
        return paddle.optimizer.Adam(learning_rate=t.learning_rate, parameters=params, grad_clip=clip)
    clip = None
    if t.gradient_clip_norm > 0:
        if t.gradient_clip_mode == "global":
            clip = paddle.nn.ClipGradByGlobalNorm(t.gradient_clip_norm)
        else:
            clip = paddle.nn.ClipGradByNorm(t.gradient_clip_norm)
    l2 = paddle.regularizer.L2Decay(t.l2_penalty) if t.l2_penalty > 0 else None
    if penalized is None:
        return paddle.optimizer.Adam(
            learning_rate=t.learning_rate, parameters=params, weight_decay=l2, grad_clip=clip
        )
    # One parameter list with per-parameter regularizers, not parameter groups: paddle clips each group on
    # its own, so groups would turn the global norm into one norm per group.
    for p in params:
        p.regularizer = l2 if id(p) in penalized else None
    return paddle.optimizer.Adam(learning_rate=t.learning_rate, parameters=params, grad_clip=clip)

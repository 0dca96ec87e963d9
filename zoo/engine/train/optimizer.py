"""The optimizer of a training run: Adam with the recipe's gradient clipping and L2 penalty.

Two recipe details differ between the references and are options here. Clipping: the starter code and
WILLOW clip each gradient tensor to ``gradient_clip_norm`` separately (``per_tensor``); PaddleVideo's recipe
clips the norm of all gradients together (``global``). L2: the starter and WILLOW penalise the classifier's
weights only (``classifier``, see :func:`zoo.nn.classifier_weights`); PaddleVideo every parameter (``all``).

Paddle clips the gradients of the loss first and adds the L2 term (``l2_penalty * w``) afterwards; TensorFlow's
starter differentiates loss + penalty and clips the sum. With penalties of 1e-8..1e-5 the difference is below
what clipping at 1.0 can notice, and it is the same in both clipping modes.

Both steps run in place (:mod:`zoo.engine.train.update`): paddle's own clip and L2 term hold a second copy of
every gradient during the update. With ``train.fused_update`` (the default) they are folded into the Adam
update itself (:class:`zoo.engine.train.update.FusedAdam`): one pass over each parameter instead of four.
"""

from __future__ import annotations

from typing import Any

from zoo.errors import ConfigError

CLIP_MODES = ("global", "per_tensor")
L2_SCOPES = ("all", "classifier")


def build_optimizer(model: Any, train_cfg: Any, in_place: bool = True) -> Any:
    """Adam over ``model``'s parameters with ``train_cfg``'s learning rate, clipping and L2 penalty.

    ``in_place`` (the default) clips and adds the L2 term inside the gradients
    (:class:`zoo.engine.train.update.InPlaceClipDecay`), bitwise the same update as paddle's own ``grad_clip`` and
    ``weight_decay`` (``in_place=False``, kept to measure against) without their copy of every gradient;
    with ``train_cfg.fused_update`` the clip factor and L2 term are applied inside the Adam update
    (:class:`zoo.engine.train.update.FusedAdam`).
    """
    import paddle

    from zoo.nn import classifier_weights

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

"""NeXtVLAD (Lin et al. 2018) as a yt8m-zoo model plugin: the PaddleVideo 1.x recipe, layer by layer.

The model class lives in :mod:`zoo_nextvlad.model`; :mod:`zoo_nextvlad.paddlevideo` maps PaddleVideo 1.x
``NEXTVLAD`` weights onto it. :mod:`zoo_nextvlad.mix` holds MixNeXtVLAD (the author's mixture of NeXtVLADs
with online distillation), built from the same layers. Registration is by path, so paddle is imported only when the model is built.
"""

from __future__ import annotations

from zoo import hookimpl

# PaddleVideo 1.x's published NeXtVLAD weights (weights_info() of models/nextvlad); the engine maps their
# 1.x names through NeXtVLAD.convert_paddlevideo.
RELEASED_WEIGHTS = "https://paddlemodels.bj.bcebos.com/video_classification/nextvlad_youtube8m.tar.gz"


@hookimpl
def zoo_register_models(register) -> None:
    register(
        "zoo_nextvlad.model:NeXtVLAD",
        name="nextvlad",
        summary="NeXtVLAD video classifier (PaddleVideo 1.x NEXTVLAD): forward(batch) -> logits [B, C].",
        released_weights=RELEASED_WEIGHTS,
    )
    register(
        "zoo_nextvlad.mix:MixNeXtVLAD",
        name="mix-nextvlad",
        summary="MixNeXtVLAD (linrongc's MixNeXtVladModel): gated NeXtVLAD branches, loss with online "
        "distillation; forward(batch) -> {logits, branch_logits, mix_weights}.",
    )

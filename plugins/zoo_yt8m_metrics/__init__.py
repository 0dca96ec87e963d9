"""yt8m-zoo's metric plugin: the YouTube-8M metrics, the Kaggle prediction format and ``zoo score``.

Metrics: ``yt8m`` (GAP@k, Hit@1, PERR, mAP, loss; :class:`zoo_yt8m_metrics.video.Yt8mMetric`) and
``yt8m-segment`` (2019 segment-level mAP; :class:`zoo_yt8m_metrics.segment.SegmentMetric`).
Prediction format: ``kaggle-csv`` (:mod:`zoo_yt8m_metrics.kaggle`). Command: ``zoo score`` (:class:`zoo_yt8m_metrics.score.ScoreCommand`). Definitions: docs/metrics.md.
Registration is by path: ``zoo score`` and ``zoo --help`` never import paddle.
"""

from zoo import hookimpl


@hookimpl
def zoo_register_metrics(register) -> None:
    register(
        f"{__name__}.video:Yt8mMetric", name="yt8m", summary="GAP@k, Hit@1, PERR, mAP and loss (YouTube-8M)"
    )
    register(f"{__name__}.segment:SegmentMetric", name="yt8m-segment", summary="2019 segment-level mAP")


@hookimpl
def zoo_register_formats(register) -> None:
    register(
        f"{__name__}.kaggle:KaggleCsvFormat",
        name="kaggle-csv",
        summary="Kaggle submission CSV (VideoId,LabelConfidencePairs)",
    )


@hookimpl
def zoo_register_commands(register) -> None:
    register(
        f"{__name__}.score:ScoreCommand",
        name="score",
        summary="score a Kaggle-format prediction file against labelled records (GAP, Hit@1, PERR, mAP)",
    )

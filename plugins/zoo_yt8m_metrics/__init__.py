"""yt8m-zoo's metric plugin: the YouTube-8M metrics and the ``zoo score`` command.

Metrics: ``yt8m`` (GAP@k, Hit@1, PERR, mAP, loss; :class:`zoo_yt8m_metrics.video.Yt8mMetric`) and
``yt8m-segment`` (2019 segment-level mAP; :class:`zoo_yt8m_metrics.segment.SegmentMetric`).
Command: ``zoo score`` (:class:`zoo_yt8m_metrics.score.ScoreCommand`). Definitions: docs/metrics.md.
"""

from zoo import hookimpl


@hookimpl
def zoo_register_metrics(register) -> None:
    from zoo_yt8m_metrics.segment import SegmentMetric
    from zoo_yt8m_metrics.video import Yt8mMetric

    register(Yt8mMetric)
    register(SegmentMetric)


@hookimpl
def zoo_register_commands(register) -> None:
    from zoo_yt8m_metrics.score import ScoreCommand

    register(ScoreCommand)

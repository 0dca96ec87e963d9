"""yt8m-zoo's plugin for the YouTube-8M 2019 segment task: ``--segments`` for ``zoo run``, ``zoo eval`` and
``zoo predict`` (docs/segments.md).

It adds its flags through command extensions (hook ``zoo_register_extensions``), uses the engine through
:mod:`zoo.engine.api`, and finds the segment reader and metric (``yt8m-segment``, of the data and metrics
plugins) through the registry: what a third party's plugin could do. Registration is by path: ``zoo --help``
imports nothing of it, ``zoo run --help`` only :mod:`zoo_yt8m_segments.commands`.
"""

from zoo import hookimpl

EXTENSIONS = {
    "run-segments": ("commands:RunSegments", "run", "the 2019 segment task on the sample data (--segments)"),
    "eval-segments": ("commands:EvalSegments", "eval", "segment MAP on rated data (--segments)"),
    "predict-segments": ("commands:PredictSegments", "predict", "a 2019 segment submission (--segments)"),
}


@hookimpl
def zoo_register_extensions(register) -> None:
    for name, (target, command, summary) in EXTENSIONS.items():
        register(f"{__name__}.{target}", name=name, summary=summary, command=command)

"""YouTube-8M features from your own videos: ``zoo extract``, and ``zoo predict --videos`` (a command extension) (Google's recipe: 1 fps frames through Google's
Inception graph and PCA, sound through VGGish, 8-bit codes, 2018 frame-level records).

Registration is by path: ``zoo --help`` imports neither PyAV nor TensorFlow. See docs/extract.md.
"""

from zoo import hookimpl


@hookimpl
def zoo_register_commands(register) -> None:
    register(
        f"{__name__}.command:ExtractCommand",
        name="extract",
        summary="YouTube-8M features (rgb, audio) from your own video files, as Google computed them",
    )


@hookimpl
def zoo_register_extensions(register) -> None:
    register(
        f"{__name__}.command:PredictVideos",
        name="predict-videos",
        summary="classify video files (--videos, --timeline): features extracted first",
        command="predict",
    )

"""Test-wide settings: a private cache directory, the path to ../shared, and a paddle on CPU."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"


@pytest.fixture(scope="session", autouse=True)
def _private_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Keep tests away from the user's ~/.cache/yt8m-zoo (sample data, downloads)."""
    if "ZOO_CACHE_DIR" not in os.environ:
        os.environ["ZOO_CACHE_DIR"] = str(tmp_path_factory.mktemp("zoo-cache"))


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The project's ../shared folder: real reference data that the project must not ship a copy of."""
    eigenvalues = SHARED / "data" / "yt8m_pca_eigenvals.npy"
    if not eigenvalues.is_file():
        pytest.skip(
            f"{eigenvalues} is not here: these tests need the real YouTube-8M PCA eigenvalues (eigenvals.npy of "
            f"the yt8m_pca.tgz that the YouTube-8M starter code and PaddleVideo download), which the project's "
            f"development machines keep in ../shared/data beside the clone"
        )
    return SHARED


@pytest.fixture(scope="session")
def paddle_cpu():
    from zoo.engine.runtime import init_paddle

    return init_paddle("cpu")


@pytest.fixture(scope="module")
def paddle(paddle_cpu):
    """``paddle`` as a test argument: the module, on CPU."""
    return paddle_cpu

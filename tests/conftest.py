"""Test-wide settings and the shared fixtures: a private cache directory, the path to ../shared, paddle on the
CPU, the tiny dataset, and throwaway environments for plugin packages."""

from __future__ import annotations

import os
import site
import subprocess
import venv
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
def real_eigenvalues():
    """The real YouTube-8M PCA eigenvalues from ../shared when they are there, else None: for tests that run
    everywhere and use the real spectrum where they can (tests that need it take ``shared_dir``)."""
    import numpy as np

    eigenvalues = SHARED / "data" / "yt8m_pca_eigenvals.npy"
    return np.load(eigenvalues) if eigenvalues.is_file() else None


@pytest.fixture(scope="session")
def paddle():
    """``paddle`` as a test argument: the module, set up for the CPU once per session (every test file's)."""
    from zoo.engine.runtime import init_paddle

    return init_paddle("cpu")


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The one tiny synthetic YouTube-8M dataset the engine, run-directory, EMA, ensemble and optimizer tests
    train on (data_helpers.tiny_dataset: 60/24/24 videos, 12 classes). Shared by the session: read it, never
    write into it (copy a file to damage it)."""
    from data_helpers import tiny_dataset

    return tiny_dataset(tmp_path_factory.mktemp("tiny-data"))


def _site_dirs() -> list[str]:
    return [*site.getsitepackages(), site.getusersitepackages()]


@pytest.fixture(scope="session")
def plugin_env(tmp_path_factory: pytest.TempPathFactory):
    """A factory: ``plugin_env(project, ...)`` installs plugin projects into a throwaway virtual environment
    that sees this one's packages, and returns its python. Tests never pip-install into the running
    environment; ``[dev]`` holds what building a plugin needs (setuptools, wheel), so the build runs offline."""

    def make(*projects: Path, editable: bool = False) -> Path:
        env = tmp_path_factory.mktemp("plugin-env")
        venv.EnvBuilder(with_pip=False, symlinks=True).create(env)
        python = env / "bin" / "python"
        purelib = subprocess.run(
            [python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        # this environment's site directories (with their .pth files: the editable yt8m-zoo) after the env's own
        parents = "; ".join(f"site.addsitedir({d!r})" for d in _site_dirs() if os.path.isdir(d))
        Path(purelib, "zz_parent_environment.pth").write_text(f"import site; {parents}\n")
        for project in projects:
            subprocess.run(
                [python, "-m", "pip", "--disable-pip-version-check", "-q", "install", "--no-deps"]
                + ["--no-build-isolation", "--no-index", *(["-e"] if editable else []), str(project)],
                capture_output=True,
                text=True,
                check=True,
                timeout=240,
            )
        return python

    return make

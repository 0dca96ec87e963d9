"""`--weights X.tar.gz`: extracted into the cache under the archive's content hash, never beside the file."""

from __future__ import annotations

import pickle
import tarfile

import numpy as np

from zoo.engine.runs.weights import read_weights


def make_archive(path, value: float) -> None:
    member = path.parent / "NEXTVLAD_final.pdparams"
    member.write_bytes(pickle.dumps({"fc.w": np.full((2, 2), value, np.float32)}, protocol=2))
    with tarfile.open(path, "w:gz") as tar:
        tar.add(member, arcname="model/NEXTVLAD_final.pdparams")
    member.unlink()


def test_archive_is_unpacked_into_the_cache_and_a_changed_archive_gives_new_weights(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("ZOO_CACHE_DIR", str(cache))
    user = tmp_path / "user"
    user.mkdir()
    archive = user / "weights.tar.gz"
    make_archive(archive, 1.0)
    first = read_weights(str(archive))
    assert float(first.state["fc.w"][0, 0]) == 1.0
    assert sorted(p.name for p in user.iterdir()) == ["weights.tar.gz"]  # nothing written beside it
    assert first.origin.startswith(str(cache))
    make_archive(archive, 2.0)  # same name, new content
    second = read_weights(str(archive))
    assert float(second.state["fc.w"][0, 0]) == 2.0
    assert first.origin != second.origin
    assert float(read_weights(str(archive)).state["fc.w"][0, 0]) == 2.0  # reused, still the new weights

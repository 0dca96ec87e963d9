"""`--weights X.tar.gz`: extracted into the cache under the archive's content hash, never beside the file."""

from __future__ import annotations

import gzip
import io
import pickle
import tarfile

import numpy as np
import pytest

from zoo.engine.runs.weights import read_weights
from zoo.errors import ZooError


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


def _tar_header(name: str, size: int) -> bytes:
    """A ustar header declaring ``size`` bytes (whatever follows), checksum included."""
    info = tarfile.TarInfo(name)
    info.size = size
    return info.tobuf(format=tarfile.GNU_FORMAT)


def test_a_member_declaring_a_huge_size_is_refused_before_anything_is_written(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("ZOO_CACHE_DIR", str(cache))
    archive = tmp_path / "bomb.tar.gz"
    with gzip.open(archive, "wb") as f:
        f.write(_tar_header("model/NEXTVLAD_final.pdparams", 10**12) + b"\0" * 4096)
    with pytest.raises(ZooError, match=r"declares 1000000000000 bytes.*refused before extracting"):
        read_weights(str(archive))
    assert _files(cache) == []


def test_an_archive_expanding_past_its_bound_leaves_nothing(tmp_path, monkeypatch):
    """A small .tar.gz of zeros that would expand far past the bound: refused, and the cache stays empty.
    The bound is 32x the archive's size (at least ARCHIVE_MIN_BOUND): the test lowers that floor so that
    the archive stays small."""
    from zoo.engine.runs import weights

    cache = tmp_path / "cache"
    monkeypatch.setenv("ZOO_CACHE_DIR", str(cache))
    assert weights.archive_bound(2 << 20) == 256 << 20  # the 2 MB archive may not reach 2.1 GB
    assert weights.archive_bound(1 << 30) == 32 << 30
    monkeypatch.setattr(weights, "ARCHIVE_MIN_BOUND", 1 << 20)
    archive = tmp_path / "zeros.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for i in range(3):  # each member under the bound, the total over it
            info = tarfile.TarInfo(f"part{i}.pdparams")
            info.size = 600_000
            tar.addfile(info, io.BytesIO(bytes(info.size)))
    assert archive.stat().st_size < 10_000
    with pytest.raises(ZooError, match=r"more than the 1048576 bytes"):
        read_weights(str(archive))
    assert _files(cache) == []


def test_links_and_too_many_members_are_refused(tmp_path, monkeypatch):
    from zoo.engine.runs import weights

    monkeypatch.setenv("ZOO_CACHE_DIR", str(tmp_path / "cache"))
    archive = tmp_path / "link.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        info = tarfile.TarInfo("model.pdparams")
        info.type = tarfile.SYMTYPE
        info.linkname = "/etc/passwd"
        tar.addfile(info)
    with pytest.raises(ZooError, match="is a link or device"):
        read_weights(str(archive))
    monkeypatch.setattr(weights, "ARCHIVE_MAX_MEMBERS", 5)
    many = tmp_path / "many.tar.gz"
    with tarfile.open(many, "w:gz") as tar:
        for i in range(6):
            tar.addfile(tarfile.TarInfo(f"f{i}"), io.BytesIO(b""))
    with pytest.raises(ZooError, match="more than 5 members"):
        read_weights(str(many))
    assert _files(tmp_path / "cache") == []


def _files(root):
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []

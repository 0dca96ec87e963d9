"""Reading weights from wherever users keep them, without running code from the file.

Sources: a run directory or checkpoint written by ``zoo train`` (safetensors), a ``.safetensors`` file, a
``.pdparams`` pickle (ours from ``paddle.save``, or PaddleVideo 1.x's ``NEXTVLAD_final.pdparams`` whose
parameter names the model plugin maps onto its own), a ``.tar.gz`` archive holding one of those, or an
``http(s)://`` URL of any of them (downloaded once into the cache; see :func:`fetch`); archives are
extracted into the cache under their content hash. Pickles are read with
an unpickler that admits numpy arrays and plain containers only: a crafted file is refused before it can
run anything.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import sys
import tarfile
import urllib.error
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from zoo import safepickle
from zoo.atomic import atomic_dir, atomic_path, atomic_write_text
from zoo.errors import ZooError
from zoo.fetch import PermanentError, retrying, sha256_file, transfer
from zoo.paths import cache_dir

ENV_RELEASED_URL = "ZOO_RELEASED_WEIGHTS_URL"


def load_pickled_arrays(path: str | Path) -> dict[str, np.ndarray]:
    """A ``.pdparams`` pickle as {name: array}, read without executing code from the file."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            obj = safepickle.load(f)
    except FileNotFoundError:
        raise ZooError(f"weights file {path} does not exist") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, ImportError) as exc:
        raise ZooError(
            f"{path}: not a parameter pickle this tool will load ({exc}). Only dicts of numpy arrays "
            f"(paddle.save / PaddleVideo .pdparams) are accepted; nothing from the file was executed."
        ) from None
    if not isinstance(obj, dict):
        raise ZooError(f"{path}: expected a dict of parameter arrays, found {type(obj).__name__}")
    out = {}
    for key, value in obj.items():
        if isinstance(value, tuple) and len(value) == 2 and isinstance(value[1], np.ndarray):
            value = value[1]  # paddle 2.x stores (name, array) pairs
        if isinstance(value, np.ndarray):
            out[str(key)] = value
    if not out:
        raise ZooError(f"{path}: the pickle holds no parameter arrays")
    return out


# ---------------------------------------------------------------------------------------------------------
# Downloads


def _parse_checksum(url: str, sha256: str | None) -> tuple[str, str | None]:
    parsed = urllib.parse.urlsplit(url)
    if parsed.fragment.startswith("sha256="):
        sha256 = sha256 or parsed.fragment.split("=", 1)[1]
        url = urllib.parse.urlunsplit(parsed._replace(fragment=""))
    return url, (sha256.lower() if sha256 else None)


def fetch(url: str, *, sha256: str | None = None, retries: int = 3, quiet: bool = False) -> Path:
    """Download ``url`` once into the cache and return the local file.

    The expected SHA-256 comes from ``sha256`` or a ``#sha256=...`` URL fragment. Without one, the digest of
    the first download is recorded beside the file and every later use checks the cached copy against it,
    so a damaged cache is detected rather than loaded. A download appears under its name only when complete
    and verified.
    """
    url, expected = _parse_checksum(url, sha256)
    name = os.path.basename(urllib.parse.urlsplit(url).path) or "download"
    folder = cache_dir("weights", hashlib.sha256(url.encode()).hexdigest()[:16])
    target = folder / name
    record = folder / (name + ".sha256")
    if target.exists():
        known = expected or (record.read_text().strip() if record.exists() else None)
        if known is None or sha256_file(target) == known:
            return target
        if not quiet:
            print(f"cached {target} does not match the expected checksum; downloading again", file=sys.stderr)

    def attempt() -> str:
        with atomic_path(target) as tmp:
            transfer(url, tmp, label=f"downloading {name}", quiet=quiet)
            actual = sha256_file(tmp)
            if expected and actual != expected:
                raise ZooError(
                    f"{url}: SHA-256 {actual} does not match the expected {expected}; the file was not kept"
                )
        return actual

    try:
        actual = retrying(attempt, retries=retries - 1, backoff=1.0)
    except PermanentError as exc:
        raise ZooError(f"could not download {url}: {exc}") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise ZooError(f"could not download {url} after {retries} attempts: {exc}") from None
    atomic_write_text(record, actual + "\n")
    return target


ARCHIVE_MAX_MEMBERS = 10_000
"""Members a weights archive may hold (PaddleVideo's hold one or two)."""
ARCHIVE_MIN_BOUND = 256 << 20
ARCHIVE_RATIO = 32
ARCHIVE_MAX_BYTES = 64 << 30
"""What an archive may expand to: ``ARCHIVE_RATIO`` times its own size, at least ``ARCHIVE_MIN_BOUND`` and at
most ``ARCHIVE_MAX_BYTES`` (weights are float arrays; they compress by a few percent, never 1000x)."""


def archive_bound(archive_bytes: int) -> int:
    """The most bytes an archive of ``archive_bytes`` may expand to (each member and in all)."""
    return min(ARCHIVE_MAX_BYTES, max(ARCHIVE_MIN_BOUND, ARCHIVE_RATIO * archive_bytes))


def _unpack(archive: Path) -> Path:
    """The archive's contents, extracted once into the cache under the archive's SHA-256: never beside the
    user's file, and a changed archive (new content, same name) gets a folder of its own. Bounded: the
    member count, each member's declared size and the declared total are checked before a byte is written,
    and the bytes actually written are counted while extracting; a failed extraction leaves nothing."""
    dest = cache_dir("weights", "unpacked") / sha256_file(archive)
    if dest.is_dir():
        return dest
    bound = archive_bound(archive.stat().st_size)
    try:
        with tarfile.open(archive) as tar:
            members = _checked_members(tar, archive, bound)
            needed = sum(m.size for m in members)
            with atomic_dir(dest, what=f"the contents of {archive}", needed=needed) as tmp:
                _extract_bounded(tar, members, archive, tmp, bound)
    except (tarfile.TarError, OSError) as exc:
        raise ZooError(f"{archive}: not a readable tar archive ({exc})") from None
    return dest


def _checked_members(tar: tarfile.TarFile, archive: Path, bound: int) -> list[tarfile.TarInfo]:
    """The members, read (not extracted) up to :data:`ARCHIVE_MAX_MEMBERS`, with their declared sizes
    checked against ``bound``; only files and folders inside the archive are accepted."""
    members: list[tarfile.TarInfo] = []
    total = 0
    for member in tar:
        if len(members) == ARCHIVE_MAX_MEMBERS:
            raise ZooError(
                f"{archive}: more than {ARCHIVE_MAX_MEMBERS} members; not a weights archive (refused "
                f"before extracting anything)"
            )
        if not (member.isfile() or member.isdir()):
            raise ZooError(
                f"{archive}: member {member.name[:200]!r} is a link or device; a weights archive holds "
                f"files and folders only"
            )
        parts = Path(member.name).parts
        if not parts and member.isdir():  # "." itself
            continue
        if member.name.startswith("/") or ".." in parts or not parts:
            raise ZooError(f"{archive}: refusing archive member {member.name[:200]!r} outside the archive")
        total += member.size
        if member.size > bound or total > bound:
            raise ZooError(
                f"{archive}: member {member.name[:200]!r} declares {member.size} bytes ({total} so far), "
                f"more than the {bound} bytes this {archive.stat().st_size}-byte archive may expand to; "
                f"refused before extracting anything"
            )
        members.append(member)
    return members


def _extract_bounded(
    tar: tarfile.TarFile, members: list[tarfile.TarInfo], archive: Path, tmp: Path, bound: int
) -> None:
    total = 0
    for member in members:
        target = tmp.joinpath(*Path(member.name).parts)
        if member.isdir():
            target.mkdir(parents=True, exist_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        source = tar.extractfile(member)
        if source is None:  # pragma: no cover - isfile() members always have data
            continue
        written = 0
        with source, open(target, "wb") as out:
            while chunk := source.read(1 << 20):
                written += len(chunk)
                if written > member.size or total + written > bound:
                    raise ZooError(
                        f"{archive}: member {member.name[:200]!r} expands past its declared {member.size} "
                        f"bytes or the {bound}-byte bound; nothing of the archive was kept"
                    )
                out.write(chunk)
        total += written


# ---------------------------------------------------------------------------------------------------------
# Resolving a weights argument


@dataclass
class LoadedWeights:
    state: dict[str, np.ndarray]
    origin: str
    format: str = "yt8m-zoo"


def _our_run(path: Path) -> LoadedWeights | None:
    from safetensors.numpy import load_file

    from zoo.engine.runs.checkpoint import WEIGHTS_FILE

    if path.is_dir():
        from zoo.engine.runs.checkpoint import latest_checkpoint

        candidates = [path / WEIGHTS_FILE]
        latest = latest_checkpoint(path)
        if latest is not None:
            candidates.append(latest / WEIGHTS_FILE)
        for candidate in candidates:
            if candidate.is_file():
                path = candidate
                break
        else:
            return None
    if path.suffix != ".safetensors":
        return None
    _check_integrity(path)
    try:
        state = load_file(str(path))
    except Exception as exc:  # noqa: BLE001 - safetensors raises its own error types
        raise ZooError(
            f"{path}: not a readable safetensors file ({exc}); re-create it or point elsewhere"
        ) from None
    return LoadedWeights(state, str(path))


def _check_integrity(weights: Path) -> None:
    """Weights written by `zoo train` carry their SHA-256: a damaged file is named, with an intact
    checkpoint of the same run to use instead."""
    from zoo.engine.runs import checkpoint

    problems = checkpoint.weights_damage(weights)
    if not problems:
        return
    run_dir = (
        weights.parent if (weights.parent / checkpoint.CHECKPOINTS).is_dir() else weights.parent.parent.parent
    )
    intact = checkpoint.newest_intact(run_dir, besides=weights.parent)
    offer = (
        f"the newest intact checkpoint of the run is {intact}: use --weights {intact}"
        if intact is not None
        else "no intact checkpoint of the run is left"
    )
    raise ZooError(f"damaged weights: {'; '.join(problems)}; {offer}")


def local_copy(source: str, *, sha256: str | None = None) -> str:
    """An ``s3://`` or ``gs://`` run directory, checkpoint, weights or prediction file as a local path (fetched
    once into the cache, see :func:`zoo.storage.localize`); anything else unchanged."""
    from zoo import storage

    if storage.is_url(source) and storage.protocol(source) not in ("http", "https"):
        return storage.localize(source, cache_dir("weights", "remote"), sha256=sha256)
    return source


def read_weights(source: str, *, sha256: str | None = None) -> LoadedWeights:
    """Weights from a path or URL (see the module docstring for what is accepted)."""
    source = local_copy(source, sha256=sha256)
    if source.startswith(("http://", "https://")):
        path = fetch(source, sha256=sha256)
    else:
        path = Path(source).expanduser()
        if not path.exists():
            raise ZooError(
                f"weights {source} do not exist (expected a run directory, checkpoint, "
                f".safetensors, .pdparams, .tar.gz or URL)"
            )
    if path.is_file() and (
        tarfile.is_tarfile(path) if path.suffix not in (".safetensors", ".pdparams") else False
    ):
        path = _unpack(path)
    ours = _our_run(path)
    if ours is not None:
        return ours
    if path.is_dir():
        found = sorted(path.rglob("*.pdparams")) or sorted(path.rglob("*.safetensors"))
        if not found:
            raise ZooError(f"{path}: no model.safetensors, checkpoint or .pdparams file inside")
        if len(found) > 1:
            # PaddleVideo archives hold one final file; prefer it when several are present
            finals = [p for p in found if "final" in p.name.lower()]
            found = finals or found
        path = found[0]
        ours = _our_run(path)
        if ours is not None:
            return ours
    if path.suffix == ".pdparams" or path.is_file():
        return LoadedWeights(load_pickled_arrays(path), str(path), format="pickle")
    raise ZooError(f"{path}: unrecognised weights")


@dataclass
class LoadReport:
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # model parameters the file did not have
    unexpected: list[str] = field(default_factory=list)  # file entries the model has no place for
    mismatched: list[tuple[str, tuple, tuple]] = field(default_factory=list)  # name, file shape, model shape

    def summary(self) -> str:
        parts = [f"loaded {len(self.loaded)} tensors"]
        if self.mismatched:
            parts.append(
                "skipped for shape: " + ", ".join(f"{n} {a}->{b}" for n, a, b in self.mismatched[:8])
            )
        if self.missing:
            parts.append(f"not in the file ({len(self.missing)}): " + ", ".join(self.missing[:8]))
        if self.unexpected:
            parts.append(f"unused from the file ({len(self.unexpected)}): " + ", ".join(self.unexpected[:8]))
        return "; ".join(parts)


def apply_weights(model: Any, loaded: LoadedWeights, *, strict: bool) -> LoadReport:
    """Copy ``loaded`` into ``model``. Foreign layouts go through the model's ``convert_paddlevideo``.

    ``strict`` (eval, predict, resume): every model tensor must be present with its shape. Otherwise
    (``--pretrain``) what fits is loaded and the rest is reported.
    """
    import paddle

    own = model.state_dict()
    state = loaded.state
    from zoo.contracts import ConvertsForeignWeights

    if not (set(state) & set(own)) and isinstance(model, ConvertsForeignWeights):
        state, unused = model.convert_paddlevideo(state)
        loaded.format = "paddlevideo-1.x"
    else:
        unused = []
    report = LoadReport(unexpected=sorted(set(unused) | (set(state) - set(own))))
    updates = {}
    for name, tensor in own.items():
        if name not in state:
            report.missing.append(name)
            continue
        value = state[name]
        if tuple(value.shape) != tuple(tensor.shape):
            report.mismatched.append((name, tuple(value.shape), tuple(tensor.shape)))
            continue
        updates[name] = paddle.to_tensor(
            np.ascontiguousarray(value).astype(np.float32, copy=False) if value.dtype != np.int64 else value
        )
        report.loaded.append(name)
    if strict and (report.missing or report.mismatched):
        raise ZooError(
            f"weights {loaded.origin} do not fit model {getattr(model, 'name', '?')}: "
            f"{report.summary()}. Check that --config matches the weights (class count, model options)"
        )
    if not report.loaded:
        raise ZooError(
            f"weights {loaded.origin}: no tensor matches model {getattr(model, 'name', '?')} "
            f"({report.summary()})"
        )
    import warnings

    with warnings.catch_warnings():  # paddle warns per tensor left out; the report above says it once
        warnings.simplefilter("ignore")
        model.set_state_dict(updates)
    return report


def released_weights_url(model: str) -> str | None:
    """The URL of the weights a model plugin's authors released (``released_weights=`` at registration)."""
    from zoo.plugins import get_plugins

    url = os.environ.get(ENV_RELEASED_URL) or get_plugins().registry("model").get(model).metadata.get(
        "released_weights"
    )
    return url or None

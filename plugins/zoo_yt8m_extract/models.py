"""The model files of the extraction: where they come from, how they are cached, checked and read.

Downloaded on first use from their official URLs into ``<cache>/extract`` with the zoo's one HTTP download.
Their hashes cannot be known in advance, so the SHA-256 of each file is recorded at its first download
(``<cache>/extract/sha256.json``) and checked on every later use; a hash the user gives
(``--model-sha256 NAME=HEX``) is checked instead. ``--model-dir DIR`` takes Google's files as they come: the
``.tgz`` archives or their extracted contents, and MediaPipe's set: its frozen VGGish graph ``vggish_new.pb``
and its ``*_matrix_data.pb`` PCA files.
Nothing read here runs as code: arrays load with ``allow_pickle=False``, archives are read member by member
without extracting, and the graph is checked for file and Python ops before it is imported.
"""

from __future__ import annotations

import io
import json
import sys
import tarfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from zoo.atomic import atomic_path, atomic_write_text
from zoo.errors import DataError, UsageError
from zoo.fetch import PermanentError, retrying, sha256_file, transfer
from zoo.paths import cache_dir
from zoo_yt8m_extract.pca import Pca, projection_pca, whitening_pca

INCEPTION_URL = "http://download.tensorflow.org/models/image/imagenet/inception-2015-12-05.tgz"
YT8M_PCA_URL = "http://data.yt8m.org/yt8m_pca.tgz"
VGGISH_URL = "https://storage.googleapis.com/audioset/vggish_model.ckpt"
VGGISH_PCA_URL = "https://storage.googleapis.com/audioset/vggish_pca_params.npz"

URLS = {"inception": INCEPTION_URL, "pca": YT8M_PCA_URL, "vggish": VGGISH_URL, "vggish-pca": VGGISH_PCA_URL}
"""The files by the names ``--model-url`` and ``--model-sha256`` use."""

GRAPH_FILE = "classify_image_graph_def.pb"
VGGISH_GRAPH_FILE = "vggish_new.pb"
"""MediaPipe's frozen VGGish (``generate_vggish_frozen_graph.py`` of its youtube8m example writes this name)."""
RGB_DIM = 2048
RGB_PCA_DIM = 1024
AUDIO_DIM = 128


def _hashes_path() -> Path:
    return cache_dir("extract") / "sha256.json"


def _recorded() -> dict[str, str]:
    path = _hashes_path()
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: unreadable ({exc}); delete it to record the hashes again") from None
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


@dataclass
class ModelFiles:
    """Where each model file comes from and the SHA-256 of each file used (for the run's report)."""

    model_dir: Path | None = None
    urls: dict[str, str] = field(default_factory=lambda: dict(URLS))
    sha256: dict[str, str] = field(default_factory=dict)  # user-given hashes by name
    quiet: bool = False
    used: dict[str, dict[str, str]] = field(default_factory=dict)

    def _say(self, text: str) -> None:
        if not self.quiet:
            print(text, file=sys.stderr)

    def download(self, name: str) -> Path:
        """The cached download of ``name`` (fetched on first use), its hash checked."""
        url = self.urls[name]
        filename = URLS[name].rsplit("/", 1)[-1]  # cached under the official name, wherever it came from
        path = cache_dir("extract") / filename
        recorded = _recorded()
        if not path.exists():
            self._say(f"downloading {name} from {url}")

            def fetch() -> None:
                with atomic_path(path) as tmp:
                    transfer(url, tmp, label=filename, quiet=self.quiet)

            try:
                retrying(fetch, retries=3, backoff=2.0)
            except PermanentError as exc:
                raise DataError(
                    f"{name}: {exc}; pass --model-dir with the file, or --model-url {name}=URL"
                ) from None
            except OSError as exc:
                raise DataError(
                    f"{name}: download from {url} failed ({exc}); retry, or pass --model-dir with the file"
                ) from None
            digest = sha256_file(path)
            expected = self.sha256.get(name)
            if expected and digest != expected:
                path.unlink()
                raise DataError(
                    f"{name}: {url} has SHA-256 {digest}, not the {expected} given by --model-sha256; "
                    f"the download was deleted"
                )
            if filename not in recorded:
                recorded[filename] = digest
                atomic_write_text(_hashes_path(), json.dumps(recorded, indent=1, sort_keys=True) + "\n")
            self._say(f"{name}: {path} sha256 {digest} (recorded; checked on every later use)")
        else:
            digest = sha256_file(path)
            expected = self.sha256.get(name) or recorded.get(filename)
            if expected and digest != expected:
                source = (
                    "--model-sha256"
                    if self.sha256.get(name)
                    else f"the hash recorded at its first download ({_hashes_path()})"
                )
                raise DataError(
                    f"{path}: SHA-256 {digest} differs from {source}: {expected}; the file changed or is "
                    f"damaged: delete it to download it again"
                )
            checked = "--model-sha256" if self.sha256.get(name) else "the hash recorded at its first download"
            self._say(
                f"{name}: {path} sha256 {digest} ({'checked against ' + checked if expected else 'unchecked'})"
            )
        self.used[name] = {"path": str(path), "sha256": digest}
        return path

    def _checked_local(self, name: str, path: Path) -> Path:
        digest = sha256_file(path)
        expected = self.sha256.get(name)
        if expected and digest != expected:
            raise DataError(f"{path}: SHA-256 {digest}, not the {expected} given by --model-sha256 {name}=")
        self._say(
            f"{name}: {path} sha256 {digest}" + (" (checked against --model-sha256)" if expected else "")
        )
        self.used[name] = {"path": str(path), "sha256": digest}
        return path

    def _local(self, name: str, *candidates: str) -> Path | None:
        if self.model_dir is None:
            return None
        for candidate in candidates:
            path = self.model_dir / candidate
            if path.is_file():
                return self._checked_local(name, path)
        return None

    def _missing(self, what: str, names: str) -> DataError:
        return DataError(
            f"{self.model_dir}: no {what} ({names}); put Google's files there or leave out --model-dir"
        )

    # -- the RGB side ---------------------------------------------------------------------------------

    def inception_graph(self) -> bytes:
        """The bytes of ``classify_image_graph_def.pb``."""
        if self.model_dir is not None:
            path = self._local("inception", GRAPH_FILE)
            if path is not None:
                return path.read_bytes()
            archive = self._local("inception", Path(INCEPTION_URL).name)
            if archive is None:
                raise self._missing("Inception graph", f"{GRAPH_FILE} or {Path(INCEPTION_URL).name}")
        else:
            archive = self.download("inception")
        return read_member(archive, GRAPH_FILE)

    def rgb_pca(self) -> Pca:
        """Google's PCA (``mean.npy``, ``eigenvecs.npy``, ``eigenvals.npy``) or MediaPipe's matrix files."""
        if self.model_dir is not None:
            if all((self.model_dir / n).is_file() for n in ("mean.npy", "eigenvals.npy", "eigenvecs.npy")):
                arrays = {
                    n: self._local("pca", n).read_bytes()
                    for n in ("mean.npy", "eigenvals.npy", "eigenvecs.npy")
                }  # type: ignore[union-attr]
                return _google_pca(arrays, str(self.model_dir))
            mean = self._local("pca", "inception3_mean_matrix_data.pb")
            proj = self._local("pca", "inception3_projection_matrix_data.pb")
            if mean is not None and proj is not None:
                return _matrix_pca(mean, proj, RGB_DIM, RGB_PCA_DIM)
            archive = self._local("pca", Path(YT8M_PCA_URL).name)
            if archive is None:
                raise self._missing(
                    "RGB PCA",
                    "mean.npy + eigenvals.npy + eigenvecs.npy, yt8m_pca.tgz, or "
                    "inception3_{mean,projection}_matrix_data.pb",
                )
        else:
            archive = self.download("pca")
        arrays = {n: read_member(archive, n) for n in ("mean.npy", "eigenvals.npy", "eigenvecs.npy")}
        return _google_pca(arrays, str(archive))

    # -- the audio side -------------------------------------------------------------------------------

    def vggish_checkpoint(self) -> str:
        """The checkpoint path (a V1 single file such as ``vggish_model.ckpt``, or a V2 prefix)."""
        if self.model_dir is not None:
            single = self.model_dir / "vggish_model.ckpt"
            if single.is_file():
                return str(self._checked_local("vggish", single))
            if (self.model_dir / "vggish_model.ckpt.index").is_file():
                self.used["vggish"] = {"path": str(single), "sha256": ""}
                return str(single)
            raise self._missing(
                "VGGish model", f"AudioSet's vggish_model.ckpt or MediaPipe's {VGGISH_GRAPH_FILE}"
            )
        return str(self.download("vggish"))

    def vggish_graph(self) -> bytes | None:
        """MediaPipe's frozen VGGish graph when ``--model-dir`` holds it and no AudioSet checkpoint (which is
        taken first); ``None`` otherwise."""
        if self.model_dir is None or (self.model_dir / "vggish_model.ckpt").is_file():
            return None
        if (self.model_dir / "vggish_model.ckpt.index").is_file():
            return None
        path = self._local("vggish", VGGISH_GRAPH_FILE)
        return path.read_bytes() if path is not None else None

    def audio_pca(self) -> Pca:
        if self.model_dir is not None:
            npz = self._local("vggish-pca", "vggish_pca_params.npz")
            if npz is None:
                mean = self._local("vggish-pca", "vggish_mean_matrix_data.pb")
                proj = self._local("vggish-pca", "vggish_projection_matrix_data.pb")
                if mean is not None and proj is not None:
                    return _matrix_pca(mean, proj, AUDIO_DIM, AUDIO_DIM)
                raise self._missing(
                    "VGGish PCA", "vggish_pca_params.npz or vggish_{mean,projection}_matrix_data.pb"
                )
        else:
            npz = self.download("vggish-pca")
        try:
            with np.load(npz, allow_pickle=False) as data:
                means, vectors = data["pca_means"], data["pca_eigen_vectors"]
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
            raise DataError(
                f"{npz}: not VGGish's PCA parameters ({exc}); expected pca_means [128, 1] and "
                f"pca_eigen_vectors [128, 128]"
            ) from None
        _expect(str(npz), "pca_means", means, (AUDIO_DIM, 1), (AUDIO_DIM,))
        _expect(str(npz), "pca_eigen_vectors", vectors, (AUDIO_DIM, AUDIO_DIM))
        return projection_pca(means, vectors)


def read_member(archive: Path, name: str) -> bytes:
    """The bytes of the regular file ``name`` (at any depth) in a ``.tgz``, read without extracting."""
    try:
        with tarfile.open(archive, "r:*") as tar:
            for member in tar:
                if member.isfile() and Path(member.name).name == name:
                    f = tar.extractfile(member)
                    if f is not None:
                        return f.read()
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise DataError(
            f"{archive}: damaged archive ({exc}); delete it to download it again (or replace it in --model-dir)"
        ) from None
    raise DataError(f"{archive}: holds no {name}; is it the right archive?")


def _npy(data: bytes, where: str, name: str) -> np.ndarray:
    try:
        return np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise DataError(f"{where}: {name} is not a readable .npy array ({exc})") from None


def _expect(where: str, name: str, array: np.ndarray, *shapes: tuple[int, ...]) -> None:
    if tuple(array.shape) not in shapes:
        raise DataError(
            f"{where}: {name} has shape {tuple(array.shape)}, expected {' or '.join(map(str, shapes))}; "
            f"these are not Google's model files"
        )


def _google_pca(arrays: dict[str, bytes], where: str) -> Pca:
    mean = _npy(arrays["mean.npy"], where, "mean.npy")
    vals = _npy(arrays["eigenvals.npy"], where, "eigenvals.npy")
    vecs = _npy(arrays["eigenvecs.npy"], where, "eigenvecs.npy")
    _expect(where, "mean.npy", mean, (RGB_DIM, 1), (RGB_DIM,))
    if vals.ndim not in (1, 2) or vals.shape[0] < RGB_PCA_DIM or vals.size != vals.shape[0]:
        raise DataError(f"{where}: eigenvals.npy has shape {vals.shape}, expected [>=1024, 1]")
    if vecs.ndim != 2 or vecs.shape[1] != RGB_DIM or vecs.shape[0] < RGB_PCA_DIM:
        raise DataError(f"{where}: eigenvecs.npy has shape {vecs.shape}, expected [>=1024, 2048]")
    return whitening_pca(mean, vecs, vals, RGB_PCA_DIM)


def parse_matrix_data(data: bytes, where: str) -> np.ndarray:
    """MediaPipe's ``MatrixData`` proto: rows (1), cols (2), packed_data (3, floats), layout (4: 0 column-major
    (the default), 1 row-major)."""
    rows = cols = layout = 0
    values: list[bytes] = []
    pos = 0

    def varint() -> int:
        nonlocal pos
        shift = result = 0
        while True:
            if pos >= len(data) or shift > 63:
                raise DataError(f"{where}: truncated MatrixData proto")
            byte = data[pos]
            pos += 1
            result |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                return result

    while pos < len(data):
        key = varint()
        number, wire = key >> 3, key & 7
        if wire == 0:
            value = varint()
            if number == 1:
                rows = value
            elif number == 2:
                cols = value
            elif number == 4:
                layout = value
        elif wire == 2:
            size = varint()
            if pos + size > len(data):
                raise DataError(f"{where}: truncated MatrixData proto")
            if number == 3:
                values.append(data[pos : pos + size])
            pos += size
        elif wire == 5:
            if number == 3:
                values.append(data[pos : pos + 4])
            pos += 4
        elif wire == 1:
            pos += 8
        else:
            raise DataError(f"{where}: not a MatrixData proto (wire type {wire})")
    flat = np.frombuffer(b"".join(values), dtype="<f4")
    if rows * cols == 0 or flat.size != rows * cols:
        raise DataError(f"{where}: MatrixData says {rows}x{cols} but holds {flat.size} values")
    if layout == 1:
        return flat.reshape(rows, cols).copy()
    return flat.reshape(cols, rows).T.copy()


def _matrix_pca(mean_path: Path, proj_path: Path, in_dim: int, out_dim: int) -> Pca:
    mean = parse_matrix_data(mean_path.read_bytes(), str(mean_path))
    proj = parse_matrix_data(proj_path.read_bytes(), str(proj_path))
    _expect(str(mean_path), "the mean", mean, (in_dim, 1))
    _expect(str(proj_path), "the projection", proj, (out_dim, in_dim))
    return projection_pca(mean, proj)


def parse_assignments(
    values: list[str] | None, option: str, check: Callable[[str], str] | None = None
) -> dict[str, str]:
    """``NAME=VALUE`` options (``--model-url``, ``--model-sha256``) as a dict; names must be known."""
    out: dict[str, str] = {}
    for item in values or []:
        name, sep, value = item.partition("=")
        if not sep or name not in URLS or not value:
            raise UsageError(f"{option} {item!r}: expected NAME=VALUE with NAME one of {', '.join(URLS)}")
        out[name] = check(value) if check else value
    return out


def check_sha256(value: str) -> str:
    value = value.strip().lower()
    if len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
        raise UsageError(f"--model-sha256: {value!r} is not a SHA-256 (64 hex digits)")
    return value

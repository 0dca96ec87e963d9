"""Data where it lives: local paths and fsspec URLs (``s3://``, ``gs://``, ``http(s)://``) behind one API.

Everything that names data or weights may be a URL. This module opens, lists and globs them through fsspec
(imported only when a URL is used: the core never loads it), streams an object with bounded memory
(:class:`RemoteFile`: fixed-size blocks fetched ahead by byte range, a few at once), retries transient
failures with exponential backoff from the byte offset where the broken response stopped (http(s), S3 and
GCS bodies are read as streams; other stores again from the block's start), turns permanent ones
into a :class:`~zoo.errors.DataError` that names the URL and the reason, and keeps credentials out of every
message (:func:`redact`). An optional whole-file cache (:class:`ReadOptions.cache_dir`, bounded by
``cache_bytes``) serves repeated epochs from local disk.

Writes (:func:`atomic_output`) go to a local temporary file first and are then published in one step: a
rename on a local disk, a single upload on an object store (S3 and GCS make an object visible only once its
upload completes: a reader sees the old object or the new one, never a part).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import posixpath
import re
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from zoo.errors import DataError, UsageError

T = TypeVar("T")

_SCHEME = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://")
# protocol -> (extra that installs its fsspec package, the package)
EXTRAS = {
    "s3": ("s3", "s3fs"),
    "s3a": ("s3", "s3fs"),
    "gs": ("gcs", "gcsfs"),
    "gcs": ("gcs", "gcsfs"),
    "http": ("http", "aiohttp"),
    "https": ("http", "aiohttp"),
}
# query parameters that carry secrets (pre-signed S3/GCS URLs, SAS tokens, API keys)
_SECRET_PARAMS = re.compile(
    r"(?i)([?&](?:x-amz-(?:signature|credential|security-token)|x-goog-(?:signature|credential)|signature|awsaccesskeyid"
    r"|sig|token|access_token|api_key|apikey|key|password|secret)=)[^&#\s'\"]*"
)
HTTP_READ_BUFFER = 4 << 20
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/@\s'\"]+@")

# Errors that retrying will not fix; everything else raised while talking to a store is taken as transient.
_PERMANENT = (
    FileNotFoundError,
    PermissionError,
    IsADirectoryError,
    NotADirectoryError,
    ValueError,
    TypeError,
    AttributeError,
    NotImplementedError,
    UsageError,
)


# s3fs and gcsfs turn a store's answers into OSError with these numbers when retrying cannot help (an invalid
# bucket name, access denied, no such key); connection resets and 5xx answers carry others or none.
_PERMANENT_ERRNOS = {errno.EINVAL, errno.EACCES, errno.EPERM, errno.ENOENT, errno.ENOTDIR, errno.EISDIR}


def is_url(path: Any) -> bool:
    """True for ``scheme://...`` other than ``file://`` (a local path in URL form)."""
    match = _SCHEME.match(str(path))
    return bool(match) and match.group(1).lower() != "file"


def local_path(path: str) -> str:
    """``file:///a/b`` -> ``/a/b``; anything else unchanged."""
    return path[len("file://") :] if path.lower().startswith("file://") else path


def protocol(url: str) -> str:
    match = _SCHEME.match(url)
    return match.group(1).lower() if match else "file"


def redact(text: Any) -> str:
    """``text`` with the credentials of any URL in it replaced by ``***`` (user:password@, signatures,
    tokens and keys in the query)."""
    text = _USERINFO.sub(r"\1***@", str(text))
    return _SECRET_PARAMS.sub(r"\1***", text)


_REDACTED = re.compile(r"(?i)^[a-z][a-z0-9+.-]*://(?:\*\*\*@|[^#]*[?&][^=&#]+=\*\*\*(?:[&#]|$))")


def was_redacted(path: Any) -> bool:
    """True for a URL whose credentials :func:`redact` replaced (``https://***@host/...``, ``?sig=***``):
    what a run's config.json keeps of a URL that carried them, which cannot be read as it is."""
    return bool(_REDACTED.match(str(path)))


def redact_tree(tree: Any) -> Any:
    """``tree`` (a config as plain data) with every string redacted: what a run directory may keep."""
    if isinstance(tree, dict):
        return {key: redact_tree(value) for key, value in tree.items()}
    if isinstance(tree, (list, tuple)):
        return [redact_tree(value) for value in tree]
    return redact(tree) if isinstance(tree, str) and "://" in tree else tree


def _install_hint(url: str) -> str:
    extra, package = EXTRAS.get(protocol(url), (None, None))
    if extra is None:
        return "install the fsspec package that implements it"
    return f"install the [{extra}] extra: pip install 'yt8m-zoo[{extra}]' (it brings {package})"


def filesystem(url: str) -> tuple[Any, str]:
    """The fsspec file system for ``url`` and the path within it.

    Credentials come from where each store's own tools look (environment, ``~/.aws``, gcloud's application
    default credentials; ``AWS_ENDPOINT_URL`` and ``STORAGE_EMULATOR_HOST`` pick another endpoint). A
    protocol whose package is missing is a :class:`UsageError` naming the extra to install.
    """
    try:
        import fsspec.config
        import fsspec.core
    except ImportError:
        raise UsageError(f"{redact(url)}: remote paths need fsspec; {_install_hint(url)}") from None
    options: dict[str, Any] = {}
    if protocol(url) in ("http", "https") and not fsspec.config.conf.get(protocol(url)):
        # aiohttp reads a body 64 KiB at a time by default; ranges of megabytes go faster in larger reads
        options["client_kwargs"] = {"read_bufsize": HTTP_READ_BUFFER}
    try:
        return fsspec.core.url_to_fs(url, **options)
    except ImportError:
        raise UsageError(
            f"{redact(url)}: {protocol(url)}:// is not installed; {_install_hint(url)}"
        ) from None
    except ValueError as exc:
        if "protocol" in str(exc).lower():
            raise UsageError(f"{redact(url)}: unknown protocol {protocol(url)}://") from None
        raise DataError(f"{redact(url)}: {redact(exc)}") from None


def missing(url: str, what: str = "object") -> str:
    """Why nothing is at ``url``: a missing bucket is named as such (the commonest typo), else the object."""
    if protocol(url) in ("s3", "s3a", "gs", "gcs"):
        bucket = url.split("://", 1)[1].split("/", 1)[0]
        try:
            fs, _ = filesystem(url)
            exists = fs.exists(bucket)
        except Exception:  # noqa: BLE001 - the bucket check only sharpens the message
            exists = True
        if not exists:
            return f"{redact(url)}: no such bucket {bucket!r} (check the URL and that the bucket exists)"
    return f"{redact(url)}: no such {what} (check the URL, or the .list file that names it)"


def require_bucket(url: str) -> None:
    """Fail before any work when the bucket an output URL names does not exist (it is never created)."""
    if protocol(url) not in ("s3", "s3a", "gs", "gcs"):
        return
    bucket = url.split("://", 1)[1].split("/", 1)[0]
    fs, _ = filesystem(url)
    if not call(lambda: fs.exists(bucket), url, "look up the bucket"):
        raise DataError(
            f"{redact(url)}: no such bucket {bucket!r} (create it first; yt8m-zoo never creates one)"
        )


def reason(exc: BaseException) -> str:
    """What went wrong, in words a user can act on, with no credentials."""
    if isinstance(exc, FileNotFoundError):
        return "no such object, bucket or directory (check the URL)"
    if isinstance(exc, PermissionError):
        return (
            "access denied (check the credentials: AWS_* variables or ~/.aws for s3://, "
            "gcloud auth application-default login for gs://)"
        )
    text = str(exc) or type(exc).__name__
    return redact(f"{type(exc).__name__}: {text}" if type(exc).__name__ not in text else text)


@dataclass(frozen=True)
class Retry:
    """How transient failures are retried: ``attempts`` in all, waiting ``backoff * 2**n`` seconds."""

    attempts: int = 6
    backoff: float = 0.5
    max_wait: float = 30.0


DEFAULT_RETRY = Retry()


def call(
    action: Callable[[], T],
    url: str,
    what: str,
    *,
    retry: Retry = DEFAULT_RETRY,
    on_retry: Callable[[str], None] | None = None,
) -> T:
    """``action()``, tried again after a transient failure; a permanent one (or the last) is a
    :class:`DataError` that names ``url`` (redacted), ``what`` was done and why it failed."""
    attempt = 0
    while True:
        try:
            return action()
        except (DataError, UsageError):
            raise
        except FileNotFoundError:
            raise DataError(missing(url, "object, prefix or bucket")) from None
        except _PERMANENT as exc:
            raise DataError(f"{redact(url)}: cannot {what}: {reason(exc)}") from None
        except OSError as exc:
            if exc.errno not in _PERMANENT_ERRNOS:
                attempt = _wait_or_give_up(exc, attempt, url, what, retry, on_retry)
                continue
            raise DataError(f"{redact(url)}: cannot {what}: {reason(exc)}") from None
        except Exception as exc:  # noqa: BLE001 - network and store errors come in many types
            attempt = _wait_or_give_up(exc, attempt, url, what, retry, on_retry)


def _wait_or_give_up(
    exc: Exception, attempt: int, url: str, what: str, retry: Retry, on_retry: Callable[[str], None] | None
) -> int:
    """After a transient failure: wait before the next attempt (and say so), or raise after the last one."""
    attempt += 1
    if attempt >= retry.attempts:
        raise DataError(f"{redact(url)}: cannot {what} after {attempt} attempts: {reason(exc)}") from None
    wait = min(retry.max_wait, retry.backoff * 2 ** (attempt - 1))
    message = f"{redact(url)}: {what} failed ({reason(exc)}); retry {attempt} in {wait:.1f} s"
    (on_retry or _warn)(message)
    time.sleep(wait)
    return attempt


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


# -- listing ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    url: str
    name: str
    is_file: bool
    size: int | None


def _entry(fs: Any, info: dict[str, Any]) -> Entry:
    name = info["name"]
    url = name if is_url(name) else fs.unstrip_protocol(name)
    is_file = info.get("type") != "directory" and not url.endswith("/")
    return Entry(url, posixpath.basename(url.rstrip("/")), is_file, info.get("size"))


def stat(url: str, *, retry: Retry = DEFAULT_RETRY) -> Entry | None:
    """What ``url`` is (an object or a directory/prefix), or None when nothing is there."""
    fs, path = filesystem(url)
    if url.endswith("/"):
        return Entry(url, posixpath.basename(url.rstrip("/")), False, None)

    def look() -> Entry | None:
        try:
            info = fs.info(path)
        except FileNotFoundError:
            return None
        return _entry(fs, {**info, "name": info.get("name", path)})

    return call(look, url, "look up", retry=retry)


def listdir(url: str, *, retry: Retry = DEFAULT_RETRY) -> list[Entry]:
    """The entries directly under ``url`` (a prefix, a bucket or an HTTP index page), sorted by URL."""
    fs, path = filesystem(url)
    entries = call(lambda: fs.ls(path, detail=True), url, "list", retry=retry)
    out = [_entry(fs, info) for info in entries]
    base = url.rstrip("/")
    return sorted((e for e in out if e.url.rstrip("/") != base), key=lambda e: e.url)


def glob(pattern: str, *, retry: Retry = DEFAULT_RETRY) -> list[str]:
    """URLs of the objects matching ``pattern`` (``*``, ``?``, ``[...]``, ``**``), sorted."""
    fs, path = filesystem(pattern)
    found = call(lambda: fs.glob(path, detail=True), pattern, "list", retry=retry)
    entries = [_entry(fs, {**info, "name": name}) for name, info in found.items()]
    return sorted(e.url for e in entries if e.is_file)


def join(base: str, relative: str) -> str:
    """``relative`` resolved against the directory of the URL ``base`` (as a browser resolves a link)."""
    if is_url(relative):
        return relative
    head = base.rsplit("/", 1)[0]
    return posixpath.normpath(f"{head}/{relative}").replace(":/", "://", 1)


def read_bytes(url: str, *, limit: int = 64 << 20, retry: Retry = DEFAULT_RETRY) -> bytes:
    """The whole of a small object (a ``.list`` file, a config, JSON metadata); more than ``limit`` bytes
    is an error rather than a surprise allocation."""
    fs, path = filesystem(url)

    def fetch() -> bytes:
        size = fs.info(path).get("size")
        if size is not None and size > limit:
            raise DataError(f"{redact(url)}: {size} bytes, more than the {limit} expected for this file")
        return fs.cat_file(path)

    return call(fetch, url, "read", retry=retry)


# -- streaming reads -------------------------------------------------------------------------------------


def parse_size(value: int | str) -> int:
    """``8388608``, ``"8MiB"``, ``"512k"``, ``"2G"`` -> bytes (binary units)."""
    if isinstance(value, int):
        return value
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*", str(value), re.IGNORECASE)
    if not match:
        raise UsageError(f"{value!r} is not a size: write bytes or a number with KiB, MiB, GiB or TiB")
    scale = 1024 ** "_kmgt".index(match.group(2).lower() or "_")
    return int(float(match.group(1)) * scale)


@dataclass(frozen=True)
class ReadOptions:
    """How remote objects are read (the reader's ``read_ahead_block``, ``read_ahead_blocks``, ``cache``)."""

    block_size: int = 8 << 20
    """Bytes per ranged request."""
    blocks: int = 4
    """Blocks requested ahead of the reading position, all at once (memory: about (blocks + 1) x block_size
    per open file, whatever the file's size)."""
    cache_dir: str | None = None
    """Keep whole objects here, so that later epochs read local disk. None: stream every time."""
    cache_bytes: int = 64 << 30
    """Bound on the cache's size; the least recently used objects are removed to stay under it."""
    retry: Retry = DEFAULT_RETRY


class RemoteFile:
    """A read-only, seekable binary stream over one object, with bounded read-ahead.

    The object is read in ``block_size`` ranges; after each read the next ``blocks`` ranges are in flight on
    the fetching threads, so a store's latency overlaps the caller's work. Each range is received straight into
    a block's buffer (:class:`Block`; buffers are reused once the reader has passed them) and the reader takes
    bytes as soon as they have landed, without waiting for the rest of the block. A range that fails is
    requested again with backoff, from the byte where the broken response stopped (:func:`read_range`); a
    short range, or an object whose size changed, is an error rather than silently wrong data. ``size`` is the
    object's size when opened. What :meth:`read` returns is always a copy: no caller holds on to a block.
    """

    def __init__(self, url: str, options: ReadOptions | None = None) -> None:
        self.url = url
        self.options = options or ReadOptions()
        if self.options.block_size < 1 or self.options.blocks < 0:
            raise UsageError("read-ahead: block size must be >= 1 byte and blocks >= 0")
        self._fs, self._path = filesystem(url)
        info = stat(url, retry=self.options.retry)
        if info is None:
            raise DataError(missing(url))
        if not info.is_file:
            raise DataError(f"{redact(url)}: is a directory (prefix), expected a file")
        if info.size is None:
            raise DataError(
                f"{redact(url)}: the server does not say the object's size; it cannot be streamed"
            )
        self.size = int(info.size)
        self._pos = 0
        self._blocks: dict[int, tuple[Block, Future[None]]] = {}
        # the block the reader is in, kept apart so that reads within it (most of them) skip the futures
        self._current: Block | None = None
        self.pid = os.getpid()
        self.closed = False

    # the binary-file protocol the readers use
    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self._pos, os.SEEK_END: self.size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def read(self, n: int = -1) -> bytes:
        if self.closed:
            raise ValueError("read from a closed RemoteFile")
        end = self.size if n is None or n < 0 else min(self.size, self._pos + n)
        if end <= self._pos:
            return b""
        block = self._current
        if block is not None and 0 <= self._pos - block.start and end - block.start <= block.filled:
            lo = self._pos - block.start  # landed in the block being read: no locks, no futures
            self._pos = end
            return bytes(block.view[lo : end - block.start])
        self._current = None  # not held while the next bytes are awaited
        bs = self.options.block_size
        self._drop_behind(self._pos // bs)  # before more are asked for: at most blocks + 1 are held
        parts = []
        pos = self._pos
        while pos < end:
            index = pos // bs
            block = self._landed(index, min(end - index * bs, bs))
            self._current = block
            lo = pos - block.start
            hi = min(block.size, end - block.start)
            parts.append(block.view[lo:hi])
            pos += hi - lo
        data = bytes(parts[0]) if len(parts) == 1 else b"".join(parts)
        self._pos = end
        self._drop_behind(min(end, self.size - 1) // bs)  # what was read is copied: their buffers are reused
        return data

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(memoryview(buffer)))
        memoryview(buffer).cast("B")[: len(data)] = data
        return len(data)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            for index in list(self._blocks):
                self._give_back(index)

    def __enter__(self) -> RemoteFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()

    # blocks
    def _landed(self, index: int, need: int) -> Block:
        """Block ``index`` once its first ``need`` bytes have arrived (the rest may still be arriving)."""
        self._block_ahead(index)
        block, future = self._blocks[index]
        if block.filled < need:
            waited = time.perf_counter()
            block.wait(need)
            READ_STATS.add(wait_s=time.perf_counter() - waited)
            if block.filled < need:
                future.result()  # the fetch failed: its DataError names the URL and the reason
                raise DataError(f"{redact(self.url)}: bytes {block.start}-{block.start + need - 1} missing")
        return block

    def _block_ahead(self, index: int) -> None:
        """Have block ``index`` and the ``blocks`` after it in flight (or done), and none further on (the
        blocks behind ``index`` are dropped by :meth:`_drop_behind` once what was read from them is copied)."""
        bs = self.options.block_size
        last = max(0, (self.size - 1) // bs)
        for ahead in range(index, min(last, index + self.options.blocks) + 1):
            if ahead not in self._blocks:
                block = Block(ahead * bs, min(self.size, (ahead + 1) * bs) - ahead * bs, bs)
                self._blocks[ahead] = (block, _fetch_pool().submit(self._fetch, block))
        for far in [i for i in self._blocks if i > index + self.options.blocks]:  # after a seek back
            self._give_back(far)

    def _drop_behind(self, index: int) -> None:
        """Release the blocks before ``index``: the reader has passed them, their buffers are reused."""
        for stale in [i for i in self._blocks if i < index]:
            self._give_back(stale)

    def _give_back(self, index: int) -> None:
        """Block ``index`` is not needed: its fetch stops and its buffer is reused. The reader forgets it too
        (the buffer may go to another file's block: never read from it again)."""
        block, future = self._blocks.pop(index)
        if block is self._current:
            self._current = None
        block.release(future)

    def _fetch(self, block: Block) -> None:
        """Receive ``block``; after a transient failure the next attempt asks for the bytes not yet received
        (the range from the byte offset where the broken response stopped, on http(s), S3 and GCS)."""
        start, end = block.start, block.start + block.size

        def get() -> None:
            READ_STATS.add(requests=1)
            read_range(self._fs, self._path, start + block.filled, end, block)
            if block.filled != block.size and not block.abandoned:
                raise ConnectionError(f"short read: {block.filled} of {block.size} bytes at offset {start}")

        try:
            block.allocate()
            call(get, self.url, f"read bytes {start}-{end - 1}", retry=self.options.retry)
        finally:
            block.finish()


class Block:
    """One ranged read's bytes as they arrive: a buffer filled from the front by a fetching thread (the
    socket's bytes received straight into it), from which the reader takes the first ``filled`` bytes without
    waiting for the rest. A block the reader no longer needs is ``abandoned``: its fetch stops at the next
    piece and its buffer goes back to the spares (:func:`_spare`) for the next block."""

    __slots__ = ("start", "size", "capacity", "buffer", "view", "filled", "finished", "abandoned", "_cond")

    def __init__(self, start: int, size: int, capacity: int) -> None:
        self.start = start
        self.size = size
        self.capacity = capacity
        self.buffer: Any = None  # taken by the fetching thread as it starts (:meth:`allocate`)
        self.view = memoryview(b"")
        self.filled = 0
        self.finished = False
        self.abandoned = False
        self._cond = threading.Condition(threading.Lock())

    def allocate(self) -> None:
        """Take a buffer for the block (before anything lands: the reader looks at :attr:`view` only once
        ``filled`` bytes have)."""
        if self.buffer is None:
            self.buffer = _spare(self.capacity)
            self.view = memoryview(self.buffer)[: self.size]

    def space(self, most: int) -> memoryview:
        """Where the next (at most ``most``) bytes go; :meth:`landed` then says how many were written."""
        return self.view[self.filled : self.filled + most]

    def landed(self, n: int) -> None:
        with self._cond:
            self.filled += n
            self._cond.notify_all()

    def put(self, piece: Any) -> None:
        """Copy ``piece`` (bytes as a client delivered them) in after the bytes already there."""
        n = min(len(piece), self.size - self.filled)
        self.view[self.filled : self.filled + n] = memoryview(piece)[:n]
        self.landed(n)

    def wait(self, need: int) -> None:
        """Until ``need`` bytes have landed or the fetch has ended (done, failed or abandoned)."""
        with self._cond:
            self._cond.wait_for(lambda: self.filled >= need or self.finished)

    def finish(self) -> None:
        with self._cond:
            self.finished = True
            self._cond.notify_all()
        if self.abandoned:
            self._recycle()

    def release(self, future: Future[None]) -> None:
        """The reader is done with this block: its fetch stops, and its buffer is reused once nothing writes
        into it (now when the fetch never started or has ended, else by the fetch as it ends)."""
        self.abandoned = True
        if future.cancel() or future.done():
            self._recycle()

    def _recycle(self) -> None:
        with self._cond:
            buffer, self.buffer = self.buffer, None
        if buffer is not None:
            _give_spare(buffer)


SPARE_BUFFERS = 4
# pid -> buffers of blocks the readers have passed, by size, for the next blocks (their pages already mapped:
# a fresh 8 MiB buffer costs a page fault per 4 KiB as the socket's bytes are written into it); at most
# SPARE_BUFFERS per process, whatever the number of files read
_spares: dict[int, dict[int, list[Any]]] = {}
_spares_lock = threading.Lock()


def _spare(size: int) -> Any:
    """A block buffer of ``size`` bytes: a spare one, or a new anonymous mapping (its pages are mapped, and
    zeroed, by the kernel as the socket's bytes are first received into them, with the interpreter lock
    released; a new ``bytearray`` is zeroed by the interpreter with the lock held)."""
    import mmap

    with _spares_lock:
        kept = _spares.get(os.getpid(), {}).get(size)
        if kept:
            return kept.pop()
    return mmap.mmap(-1, size)


def _give_spare(buffer: Any) -> None:
    with _spares_lock:
        if os.getpid() not in _spares:  # a forked child starts its own (nothing of a parent's is reused)
            _spares.clear()
            _spares[os.getpid()] = {}
        kept = _spares[os.getpid()].setdefault(len(buffer), [])
        if sum(map(len, _spares[os.getpid()].values())) < SPARE_BUFFERS:
            kept.append(buffer)


STREAM_CHUNK = 1 << 20
FETCH_THREADS = 16
_pool: tuple[int, ThreadPoolExecutor] | None = None
_pool_lock = threading.Lock()


def _fetch_pool() -> ThreadPoolExecutor:
    """The threads that fetch blocks, shared by this process's open files (a pool per file started new
    threads for every file, a cost paid on the reader's thread); made again in a forked child."""
    global _pool
    with _pool_lock:
        if _pool is None or _pool[0] != os.getpid():
            _pool = (os.getpid(), ThreadPoolExecutor(FETCH_THREADS, thread_name_prefix="zoo-read"))
        return _pool[1]


class ReadStats:
    """What this process's remote reads cost (for benchmarks and debugging): ranged requests sent, and
    seconds a reader spent waiting for bytes that had not arrived yet (time the store, not decoding, set)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests = 0
        self.wait_s = 0.0

    def add(self, *, requests: int = 0, wait_s: float = 0.0) -> None:
        with self._lock:
            self.requests += requests
            self.wait_s += wait_s


READ_STATS = ReadStats()


def read_range(fs: Any, path: str, start: int, end: int, sink: Block) -> None:
    """Receive the bytes ``start``..``end - 1`` of ``path`` into ``sink`` as they arrive, so that when the
    connection breaks, what came before stays there and the next attempt starts where it stopped.

    http(s) ranges of a plain URL with fsspec's default settings, and S3 ranges through a pre-signed URL
    (:func:`_presigned`), are read with Python's ``http.client`` on a connection kept per fetching thread,
    straight into the block's buffer (a connection closed or reset midway keeps every byte that arrived); any
    other answer (a redirect, an error, an expired signature) and anything else goes through the store's own
    client: fsspec's aiohttp session for http(s) URLs with credentials or settings of their own, s3fs's
    aiobotocore, gcsfs's aiohttp session, their bodies taken piece by piece as they arrive; other stores
    through ``fs.cat_file``, whose range arrives whole or not at all (a retry asks for all of it again)."""
    if start >= end:
        return
    import fsspec.asyn

    kind = type(fs).__name__
    if kind == "HTTPFileSystem":
        if _plain_http(fs, path) and _stdlib_range(path, start, end, sink):
            return
        fsspec.asyn.sync(fs.loop, _http_range, fs, path, start, end, sink)
    elif kind == "S3FileSystem":
        signed = _presigned(fs, path)
        if signed is not None:
            if _stdlib_range(signed, start, end, sink, cafile=os.environ.get("AWS_CA_BUNDLE") or None):
                return
            _refused(fs, path)  # expired (403) or redirected: signed anew for the next range
        fsspec.asyn.sync(fs.loop, _s3_range, fs, path, start, end, sink)
    elif kind == "GCSFileSystem":
        fsspec.asyn.sync(fs.loop, _gcs_range, fs, path, start, end, sink)
    else:
        sink.put(fs.cat_file(path, start=start, end=end))


_URL_SAFE = re.compile(r"^https?://[A-Za-z0-9.:\[\]-]+(/[!#$%&'()*+,./0-9:;=?@A-Z_a-z~-]*)?$")
_connections = threading.local()


def _plain_http(fs: Any, url: str) -> bool:
    """Whether a range of ``url`` may be read with Python's own ``http.client``: a plain URL (no user:password,
    nothing that would need quoting) on a file system with fsspec's defaults (no headers, auth or client
    settings of the user's, which only aiohttp's session knows)."""
    import fsspec.config

    return (
        not fs.kwargs
        and not fsspec.config.conf.get(protocol(url))
        and set(fs.client_kwargs) <= {"read_bufsize"}
        and bool(_URL_SAFE.match(url))
    )


SIGNED_FOR = 3600
"""Seconds a pre-signed S3 URL is asked to be valid; one is used until 5 minutes before that."""
# (pid, file system, key) -> (pre-signed URL or "" for none, monotonic time until which that holds, whether a
# pre-signed GET of the object was refused since it was last signed); never printed
_signed: dict[tuple[int, int, str], tuple[str, float, bool]] = {}
_signed_lock = threading.Lock()


def _presigned(fs: Any, path: str) -> str | None:
    """A pre-signed GET URL for the S3 object ``path`` (signed by s3fs's client with the credentials it
    found; one per object, signed anew before it expires or after it was refused), or None where
    ``http.client`` cannot stand in for botocore: request settings of the user's (requester pays, customer
    keys), client settings of their own (``client_kwargs``: TLS verification, ...), a proxy, a URL that would
    need quoting, an object whose pre-signed GETs were refused twice in a row (``AWS_CA_BUNDLE`` is
    honoured). Such a URL carries a signature: only :func:`redact`-ed text of it may reach a message."""
    import urllib.request

    key = (os.getpid(), id(fs), path)
    now = time.monotonic()
    with _signed_lock:
        known = _signed.get(key)
    if known is not None and now < known[1]:
        return known[0] or None
    if fs.req_kw or set(fs.client_kwargs) - {"endpoint_url", "region_name"}:
        return None
    try:
        url = fs.url(path, expires=SIGNED_FOR)
    except Exception:  # noqa: BLE001 - no signature (no credentials, ...): the store's own client says why
        return None
    scheme, _, rest = url.partition("://")
    host = rest.split("/", 1)[0].rsplit(":", 1)[0]
    if not _URL_SAFE.match(url) or (
        urllib.request.getproxies().get(scheme) and not urllib.request.proxy_bypass(host)
    ):
        return None
    with _signed_lock:
        while len(_signed) >= 256:
            _signed.pop(next(iter(_signed)))
        _signed[key] = (url, now + SIGNED_FOR - 300, bool(known and known[2]))
    return url


def _refused(fs: Any, path: str) -> None:
    """A pre-signed GET of ``path`` was answered with something else than its bytes (403 for an expired
    signature, a redirect to another region): it is signed anew for the next range, and when that one is
    refused too, the object is left to botocore for the signature's lifetime."""
    key = (os.getpid(), id(fs), path)
    with _signed_lock:
        known = _signed.get(key)
        again = known is not None and known[2]
        _signed[key] = ("", time.monotonic() + SIGNED_FOR if again else 0.0, True)


def _stdlib_range(url: str, start: int, end: int, sink: Block, cafile: str | None = None) -> bool:
    """Bytes ``start``..``end - 1`` of a plain http(s) URL through ``http.client`` on this thread's kept-alive
    connection: the body received from the socket straight into ``sink`` (no event loop to hop to). False
    (nothing read) when the server answers anything but the range or the whole object (a redirect, an error):
    the store's own client then asks again and handles it as it always has. ``cafile``: the certificates an
    https server's must chain to (the system's without it)."""
    import http.client
    import urllib.parse

    parts = urllib.parse.urlsplit(url)
    key = (os.getpid(), parts.scheme, parts.netloc, cafile)  # a forked child opens its own
    pool = _connections.__dict__.setdefault("by_host", {})

    def connect() -> http.client.HTTPConnection:
        if parts.scheme != "https":
            return http.client.HTTPConnection(parts.netloc, timeout=60)
        import ssl

        context = ssl.create_default_context(cafile=cafile)
        return http.client.HTTPSConnection(parts.netloc, timeout=60, context=context)

    kept = pool.pop(key, None)
    connection = kept or connect()
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    headers = {"Range": f"bytes={start}-{end - 1}"}
    try:
        try:
            connection.request("GET", target, headers=headers)
            response = connection.getresponse()
        except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
            if kept is None:
                raise
            # a kept connection the server closed while idle: asked again at once on a new one
            connection.close()
            connection = connect()
            connection.request("GET", target, headers=headers)
            response = connection.getresponse()
        if response.status not in (200, 206) or (response.status == 200 and start > 0):
            connection.close()
            return False
        # the body received into the block piece by piece as the socket hands it over (readinto1: at most one
        # receive, up to STREAM_CHUNK): a connection closed or reset midway keeps every byte that arrived, and
        # the next attempt asks from the byte after them
        wanted = end - start
        while wanted > 0 and not sink.abandoned:
            got = response.readinto1(sink.space(min(STREAM_CHUNK, wanted)))
            if not got:  # closed before the end: what arrived is kept, the caller asks for the rest
                break
            sink.landed(got)
            wanted -= got
        if response.status == 206 and wanted == 0 and not response.will_close:
            response.read()  # nothing left: marks the response finished, so the connection takes a new request
            pool[key] = connection  # the body was read to its end: the connection serves the next range
        else:
            connection.close()
        return True
    except BaseException:
        connection.close()
        raise


async def _http_range(fs: Any, url: str, start: int, end: int, sink: Block) -> None:
    kw = dict(fs.kwargs)
    headers = {**kw.pop("headers", {}), "Range": f"bytes={start}-{end - 1}"}
    session = await fs.set_session()
    async with session.get(fs.encode_url(url), headers=headers, **kw) as response:
        if response.status == 404:
            raise FileNotFoundError(url)
        response.raise_for_status()
        if response.status != 206 and start > 0:
            raise ValueError("the server ignores byte ranges (answered 200 to a Range request)")
        await _receive(response.content, end - start, sink)


async def _gcs_range(fs: Any, path: str, start: int, end: int, sink: Block) -> None:
    """As gcsfs downloads a file (its session, headers with the credentials, parameters), for one range."""
    from gcsfs.retry import validate_response

    await fs._set_session()
    headers = fs._get_headers({"Range": f"bytes={start}-{end - 1}"})
    async with fs.session.get(
        url=fs.url(path), params=fs._get_params({}), headers=headers, timeout=fs.requests_timeout
    ) as response:
        if response.status >= 400:
            validate_response(response.status, await response.read(), path)
        await _receive(response.content, end - start, sink)


async def _s3_range(fs: Any, path: str, start: int, end: int, sink: Block) -> None:
    bucket, key, version = fs.split_path(path)
    extra = {"VersionId": version} if version else {}
    response = await fs._call_s3(
        "get_object", Bucket=bucket, Key=key, Range=f"bytes={start}-{end - 1}", **extra, **fs.req_kw
    )
    body = response["Body"]
    try:
        # aiobotocore's body over aiohttp: its response's stream, read as the pieces arrive
        content = getattr(getattr(body, "raw_stream", None), "content", None)
        if hasattr(content, "iter_chunks"):
            await _receive(content, end - start, sink)
            return
        wanted = end - start  # another HTTP backend: its own reads
        got = 0
        while (
            got < wanted
            and not sink.abandoned
            and (chunk := await body.read(min(STREAM_CHUNK, wanted - got)))
        ):
            sink.put(chunk)
            got += len(chunk)
    finally:
        body.close()


async def _receive(content: Any, wanted: int, sink: Block) -> None:
    """Copy up to ``wanted`` bytes of an aiohttp response's ``content`` into ``sink`` as they arrive.

    The pieces are the ones the socket delivered (``iter_chunks``), and the stream's buffer is raised to the
    range's size where aiohttp allows it, so the connection is not paused every 128 KiB while the pieces
    wait for this loop."""
    if hasattr(content, "set_read_chunk_size"):
        content.set_read_chunk_size(min(wanted, HTTP_READ_BUFFER))
    got = 0
    async for chunk, _end_of_http_chunk in content.iter_chunks():
        piece = chunk if len(chunk) <= wanted - got else memoryview(chunk)[: wanted - got]
        sink.put(piece)
        got += len(piece)
        if got >= wanted or sink.abandoned:
            break


PREFETCHED_FILES = 2
# url -> (pid, the file being opened and its first blocks asked for, on the fetching threads)
_prefetched: dict[str, tuple[int, Future[RemoteFile | None]]] = {}
_prefetch_lock = threading.Lock()


def prefetch(url: str, options: ReadOptions | None = None) -> None:
    """Start opening ``url`` and reading its first blocks on the fetching threads now, so that the next
    :func:`open_input` of it finds them in flight (a reader's next file, while it still decodes the current
    one; the caller does not wait, not even for the object's size). At most two files per process are kept
    so, the older dropped first: the reader's next file may be asked for before the current one is opened
    (the pipeline tells the next task's source as a task starts), and dropping the current one then would
    fetch it twice. Local paths and cached reads are left alone."""
    options = options or ReadOptions()
    if not is_url(url) or options.cache_dir or options.blocks < 1:
        return
    with _prefetch_lock:
        if url in _prefetched:
            return
        while len(_prefetched) >= PREFETCHED_FILES:
            _drop(*_prefetched.pop(next(iter(_prefetched))))
        _prefetched[url] = (os.getpid(), _fetch_pool().submit(_open_ahead, url, options))


def _open_ahead(url: str, options: ReadOptions) -> RemoteFile | None:
    try:
        ahead = RemoteFile(url, options)
    except (DataError, UsageError):
        return None  # reported by the open that follows, with its own context
    ahead._block_ahead(0)
    return ahead


def _drop(pid: int, opening: Future[RemoteFile | None]) -> None:
    if pid == os.getpid():  # a parent's threads do not exist in a forked child: nothing to close there

        def close(done: Future[RemoteFile | None]) -> None:
            ahead = None if done.cancelled() or done.exception() else done.result()
            if ahead is not None:
                ahead.close()

        opening.add_done_callback(close)


def _take_prefetched(url: str, options: ReadOptions) -> RemoteFile | None:
    with _prefetch_lock:
        entry = _prefetched.pop(url, None)
    if entry is None or entry[0] != os.getpid():
        return None  # not asked for, or asked for by a parent process
    try:
        ahead = entry[1].result()
    except Exception:  # noqa: BLE001 - the open that follows reports it, with its own context
        return None
    if ahead is not None and ahead.options != options:
        ahead.close()  # other settings
        return None
    return ahead


def open_input(path: str, options: ReadOptions | None = None) -> Any:
    """A binary stream to read ``path`` (local path or URL). Local: an unbuffered file; a URL: a
    :class:`RemoteFile`, or the cached local copy when ``options.cache_dir`` is set. Both have ``size``
    (local files as an attribute set here) and raise :class:`DataError` naming the path when missing."""
    options = options or ReadOptions()
    if is_url(path) and options.cache_dir:
        path = cached_copy(path, options)
    if is_url(path):
        return _take_prefetched(path, options) or RemoteFile(path, options)
    path = local_path(path)
    try:
        f = open(path, "rb", buffering=0)  # noqa: SIM115 - returned to the caller
    except FileNotFoundError:
        raise DataError(f"{path}: file not found; check the path (or the .list file that names it)") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a directory, expected a file") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot open: {exc}") from None
    return f


def size_of(f: Any) -> int:
    """The size of a stream from :func:`open_input`."""
    size = getattr(f, "size", None)
    return int(size) if size is not None else os.fstat(f.fileno()).st_size


# -- the local cache -------------------------------------------------------------------------------------

_cache_lock = threading.Lock()


def cached_copy(url: str, options: ReadOptions) -> str:
    """A local copy of ``url`` under ``options.cache_dir`` (fetched once, atomically), the cache kept under
    ``cache_bytes`` by removing the least recently used copies. An object larger than the whole bound is
    not cached: its URL is returned and it is streamed."""
    assert options.cache_dir is not None
    info = stat(url, retry=options.retry)
    if info is None or not info.is_file:
        raise DataError(missing(url))
    size = int(info.size or 0)
    if size > options.cache_bytes:
        return url
    key = hashlib.sha256(f"{redact(url)}\0{size}".encode()).hexdigest()[:32]
    root = os.path.abspath(os.path.expanduser(options.cache_dir))
    target = os.path.join(root, key[:2], f"{key}-{posixpath.basename(url.split('?')[0])[:80]}")
    with contextlib.suppress(FileNotFoundError):
        if os.path.getsize(target) == size:
            os.utime(target)  # most recently used
            return target
    os.makedirs(os.path.dirname(target), exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".fetch.", suffix=".partial", dir=os.path.dirname(target))
    try:
        with os.fdopen(fd, "wb") as out, RemoteFile(url, options) as src:
            while chunk := src.read(options.block_size):
                out.write(chunk)
        if os.path.getsize(tmp) != size:
            raise DataError(f"{redact(url)}: the object changed while it was being cached; try again")
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _evict(root, options.cache_bytes, keep=target)
    return target


def _evict(root: str, bound: int, *, keep: str) -> None:
    with _cache_lock:
        files = []
        for folder, _dirs, names in os.walk(root):
            for name in names:
                if name.endswith(".partial"):
                    continue
                path = os.path.join(folder, name)
                with contextlib.suppress(FileNotFoundError):
                    st = os.stat(path)
                    files.append((st.st_mtime, st.st_size, path))
        total = sum(size for _, size, _ in files)
        for _, size, path in sorted(files):
            if total <= bound:
                break
            if path == keep:
                continue
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)  # a reader that has it open keeps reading it
                total -= size


# -- writes ----------------------------------------------------------------------------------------------


@contextlib.contextmanager
def atomic_output(path: str, *, suffix: str = ".partial") -> Iterator[str]:
    """Yield a local temporary path; on success its contents appear at ``path`` whole.

    Local ``path``: fsync and rename (:func:`zoo.atomic.atomic_path`). A URL: one upload (S3 and GCS
    publish an object only when its upload completes); ``http(s)://`` cannot be written.
    """
    if not is_url(path):
        from zoo.atomic import atomic_path

        with atomic_path(local_path(path), suffix=suffix) as tmp:
            yield str(tmp)
        return
    if protocol(path) in ("http", "https"):
        raise UsageError(f"{redact(path)}: http(s) URLs are read-only; write to a local path, s3:// or gs://")
    filesystem(path)  # a missing protocol package fails before the work is done
    fd, tmp = tempfile.mkstemp(prefix=".upload.", suffix=suffix)
    os.close(fd)
    try:
        yield tmp
        upload_file(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


@contextlib.contextmanager
def staged_output(path: str, *, last: str | None = None) -> Iterator[Path]:
    """An output directory: ``path`` itself when local; for a bucket URL, a local staging directory (not yet
    created) whose files are uploaded under ``path`` on success, each as one object, ``last`` (a relative
    name, e.g. a completion marker) after all others. On failure nothing is uploaded."""
    if not is_url(path):
        yield Path(local_path(path))
        return
    check_output(path)
    staging = tempfile.mkdtemp(prefix=".zoo-upload.")
    try:
        target = Path(staging, posixpath.basename(path.rstrip("/")) or "output")
        yield target
        if target.exists():
            upload_tree(str(target), path, last=last)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def check_output(path: str) -> None:
    """Refuse an output URL that cannot be written (http(s), a missing bucket) before any work is done."""
    if not is_url(path):
        return
    if protocol(path) in ("http", "https"):
        raise UsageError(f"{redact(path)}: http(s) URLs are read-only; write to a local path, s3:// or gs://")
    require_bucket(path)


def upload_file(local: str, url: str) -> None:
    """``local`` to the object ``url`` in one upload (visible only when complete on S3 and GCS)."""
    if protocol(url) in ("http", "https"):
        raise UsageError(f"{redact(url)}: http(s) URLs are read-only; write to a local path, s3:// or gs://")
    fs, target = filesystem(url)
    call(lambda: fs.put_file(local, target), url, "upload")


def upload_tree(local_dir: str, url: str, *, last: str | None = None, skip: tuple[str, ...] = ()) -> None:
    """Copy the files under ``local_dir`` to the prefix ``url``, each object published whole; ``last``
    (a relative path, e.g. a completion marker) is uploaded after every other file, so that a reader that
    waits for it sees a complete tree."""
    fs, base = filesystem(url)
    names = []
    for folder, _dirs, files in os.walk(local_dir):
        for name in files:
            if name not in skip:
                names.append(os.path.relpath(os.path.join(folder, name), local_dir))
    names.sort(key=lambda n: (n == last, n))
    for name in names:
        dest = posixpath.join(base.rstrip("/"), name.replace(os.sep, "/"))
        src = os.path.join(local_dir, name)
        call(
            lambda src=src, dest=dest: fs.put_file(src, dest),
            f"{url.rstrip('/')}/{name}",
            "upload",
        )


def download_tree(
    url: str, local_dir: str, *, keep: Callable[[str], bool] | None = None, missing_ok: bool = False
) -> int:
    """Copy the objects under the prefix ``url`` into ``local_dir`` (made if missing), those whose name
    relative to the prefix ``keep`` accepts (all without it); returns how many. Nothing under the prefix is
    an error, unless ``missing_ok`` (then nothing is copied)."""
    fs, base = filesystem(url)

    def listing() -> list[str]:
        try:
            return list(fs.find(base, detail=False))
        except FileNotFoundError:
            if missing_ok:
                return []
            raise

    found = call(listing, url, "list")
    if not found and not missing_ok:
        raise DataError(f"{redact(url)}: nothing there (no such prefix, or it is empty)")
    os.makedirs(local_dir, exist_ok=True)
    prefix = base.rstrip("/") + "/"
    copied = 0
    for name in sorted(found):
        rel = name[len(prefix) :] if name.startswith(prefix) else posixpath.basename(name)
        if not rel or rel.endswith("/") or (keep is not None and not keep(rel)):
            continue
        dest = os.path.join(local_dir, *rel.split("/"))
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        call(lambda name=name, dest=dest: fs.get_file(name, dest), fs.unstrip_protocol(name), "download")
        copied += 1
    return copied


def localize(url: str, root: str | os.PathLike, *, sha256: str | None = None) -> str:
    """A local copy of the object or prefix ``url`` under ``root`` (weights, pretrained models), made once.

    An object is copied to ``root/<key>/<name>``; a prefix (a run directory in a bucket) to
    ``root/<key>/<name>/`` whole. The key hashes the URL with its size and modification stamp, so a changed
    object is fetched again; a copy appears only complete (rename). ``sha256`` (or a ``#sha256=`` fragment
    on the URL) is checked before the copy is kept.
    """
    import urllib.parse

    from zoo.atomic import atomic_dir

    parsed = urllib.parse.urlsplit(url)
    if parsed.fragment.startswith("sha256="):
        sha256 = sha256 or parsed.fragment[len("sha256=") :].lower()
        url = urllib.parse.urlunsplit(parsed._replace(fragment=""))
    found = stat(url)
    if found is None:
        raise DataError(missing(url))
    fs, path = filesystem(url)
    stamp = ""
    if found.is_file:
        info = call(lambda: fs.info(path), url, "look up")
        stamp = str(
            info.get("ETag") or info.get("etag") or info.get("mtime") or info.get("LastModified") or ""
        )
    key = hashlib.sha256(f"{redact(url)}\0{found.size}\0{stamp}".encode()).hexdigest()[:16]
    name = posixpath.basename(url.split("?")[0].rstrip("/")) or "download"
    folder = os.path.join(os.fspath(root), key)
    target = os.path.join(folder, name)
    if os.path.exists(target):
        return target
    os.makedirs(folder, exist_ok=True)
    if not found.is_file:
        with atomic_dir(target) as tmp:
            os.rmdir(tmp)
            download_tree(url, str(tmp))
        return target
    with atomic_output(target) as tmp:
        call(lambda: fs.get_file(path, tmp), url, "download")
        if sha256:
            digest = hashlib.sha256()
            with open(tmp, "rb") as f:
                while chunk := f.read(1 << 20):
                    digest.update(chunk)
            if digest.hexdigest() != sha256.lower():
                raise DataError(
                    f"{redact(url)}: SHA-256 {digest.hexdigest()} does not match the expected {sha256}; "
                    f"the file was not kept"
                )
    return target

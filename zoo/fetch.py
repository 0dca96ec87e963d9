"""The one HTTP download of the project (dataset files and weights): bounded, resumable, retried, hashed.

Every transfer is bounded three ways, so a hostile or broken server cannot fill the disk or hold a run
forever: by the ``Content-Length`` it announced (more bytes are an error), by :attr:`Limits.max_bytes`
whatever it announced (a larger announced size is refused before a byte is written, and a body that grows
past it is deleted), and by a stall rule (:attr:`Limits.stall_seconds`, :attr:`Limits.min_rate`) that ends a
transfer whose rate over a window falls below a floor -- a per-read timeout alone never ends a server that
trickles one byte at a time. Imports no paddle: the data plugin and the engine both use it.
"""

from __future__ import annotations

import hashlib
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from zoo.progress import Progress

CHUNK = 1 << 20
T = TypeVar("T")


@dataclass(frozen=True)
class Limits:
    """Bounds of one transfer."""

    timeout: float = 60.0
    """Seconds to wait for the connection and for each read."""
    max_bytes: int = 16 << 30
    """Largest file accepted, whatever the server announces (16 GiB)."""
    stall_seconds: float = 120.0
    """Length of the window over which the transfer rate is measured."""
    min_rate: float = 4096.0
    """Bytes per second a window must reach; a slower transfer is ended (and may be retried)."""


DEFAULT_LIMITS = Limits()


class PermanentError(Exception):
    """A failure that retrying will not fix (HTTP 404, ...)."""


class TransferError(OSError):
    """A transfer that broke off or broke a bound; retrying may help."""


class TooLarge(PermanentError):
    """A file larger than :attr:`Limits.max_bytes` (announced or sent): retrying gives the same bytes."""


def file_digest(path: str | os.PathLike, algorithm: str = "sha256") -> str:
    """Hex digest of a file, read in 1 MiB chunks."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_file(path: str | os.PathLike) -> str:
    return file_digest(path, "sha256")


def open_url(url: str, timeout: float, offset: int = 0) -> Any:
    """An HTTP response for ``url`` (from byte ``offset`` with a Range request); 4xx errors are permanent."""
    request = urllib.request.Request(url, headers={"User-Agent": "yt8m-zoo"})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    try:
        return urllib.request.urlopen(request, timeout=timeout)  # noqa: S310 - http(s) URLs only
    except urllib.error.HTTPError as exc:
        if 400 <= exc.code < 500 and exc.code not in (408, 416, 429):
            raise PermanentError(f"HTTP {exc.code} {exc.reason} for {url}") from None
        raise


def transfer(
    url: str,
    dest: str | os.PathLike,
    *,
    limits: Limits = DEFAULT_LIMITS,
    resume: bool = False,
    label: str | None = None,
    quiet: bool = False,
) -> int:
    """Write the body of ``url`` to ``dest``; returns the bytes fetched.

    ``resume``: continue a partial ``dest`` with a Range request (starting over when the server ignores it).
    Raises :class:`TransferError` when the body breaks a bound or ends early, and the ``urllib``/``OSError``
    of a failed connection; :class:`PermanentError` for a client error such as 404.
    """
    dest = Path(dest)
    offset = dest.stat().st_size if resume and dest.exists() else 0
    try:
        response = open_url(url, limits.timeout, offset)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:
            dest.unlink()
            raise TransferError("the server refused to resume the partial file; starting over") from None
        raise
    with response:
        if offset and getattr(response, "status", 200) != 206:
            offset = 0  # the server ignored the Range request
        length = response.headers.get("Content-Length")
        announced = int(length) if length and length.strip().isdigit() else None
        if announced is not None and offset + announced > limits.max_bytes:
            raise TooLarge(
                f"the server announces {offset + announced} bytes, more than the {limits.max_bytes} allowed "
                f"(--max-file-mb); nothing was written"
            )
        bound = limits.max_bytes - offset if announced is None else announced
        bar = Progress(
            label or dest.name,
            (offset + announced) if announced else None,
            initial=offset,
            byte_sizes=True,
            enabled=not quiet,
            interval=0.5,
            log_interval=30.0,
        )
        fetched = 0
        window_start, window_bytes = time.monotonic(), 0
        out = open(dest, "ab" if offset else "wb")
        try:
            while chunk := response.read1(CHUNK):
                fetched += len(chunk)
                if fetched > bound:
                    if announced is not None:
                        raise TransferError(f"the server sent more than the {bound} bytes announced")
                    raise TooLarge(
                        f"the server sent more than the {limits.max_bytes} bytes allowed (--max-file-mb); "
                        f"what it sent was deleted"
                    )
                out.write(chunk)
                bar.update(len(chunk))
                window_bytes += len(chunk)
                now = time.monotonic()
                if now - window_start >= limits.stall_seconds:
                    rate = window_bytes / (now - window_start)
                    if rate < limits.min_rate:
                        raise TransferError(
                            f"stalled: {rate:.0f} bytes/s over {now - window_start:.0f} s, below the "
                            f"{limits.min_rate:.0f} bytes/s floor"
                        )
                    window_start, window_bytes = now, 0
            out.flush()
            os.fsync(out.fileno())
        except TooLarge:
            out.close()
            dest.unlink(missing_ok=True)  # over the cap: nothing of it is worth resuming
            raise
        finally:
            out.close()
            bar.close()
    if announced is not None and fetched != announced:
        raise TransferError(f"connection closed after {offset + fetched} of {offset + announced} bytes")
    return fetched


def retrying(
    action: Callable[[], T],
    *,
    retries: int,
    backoff: float,
    on_retry: Callable[[Exception, int, float], None] | None = None,
) -> T:
    """``action()``, tried again up to ``retries`` times after a network failure, waiting ``backoff * 2**n``
    seconds; a :class:`PermanentError` (or any other exception) ends it at once."""
    attempt = 0
    while True:
        try:
            return action()
        except (urllib.error.URLError, OSError, ValueError) as exc:
            if attempt == retries:
                raise
            wait = backoff * 2**attempt
            attempt += 1
            if on_retry is not None:
                on_retry(exc, attempt, wait)
            time.sleep(wait)

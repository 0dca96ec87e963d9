"""``zoo data download``: the official YouTube-8M download protocol, resumable and verified.

What ``curl data.yt8m.org/download.py | partition=2/frame/train mirror=us python`` does, done safely:

- the plan ``http://data.yt8m.org/{version}/download_plans/{kind}_{split}.json`` (``{"files": {name: md5}}``)
  is saved beside the data as ``{partition with / -> _}_download_plan.json`` and reused on the next run;
- ``--shard X,Y`` keeps the file names ``f`` with ``int(md5(f), 16) % Y == X - 1`` (the official split);
- files come from ``http://{mirror}.data.yt8m.org/{partition}/{name}`` and are saved as
  ``train0042.tfrecord``: the two-letter code at the end of the remote name, read in the 62-letter alphabet
  a-z A-Z 0-9, is the number;
- a file already present with the right md5 is skipped; a download goes to ``.NAME.partial`` (continued with
  an HTTP Range request after an interruption), is md5-checked, and only then renamed to its final name:
  a file under its final name is always complete and verified. A file whose md5 does not match is deleted
  and fetched again (with backoff); if it keeps failing, the run ends with exit code 1 naming it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from zoo.errors import DataError, UsageError

OFFICIAL_PLAN_BASE = "http://data.yt8m.org"
MIRRORS = ("us", "eu", "asia")
CODE_ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
_CHUNK = 1 << 20
_NAME = re.compile(r"^(?P<prefix>.*?)(?P<code>[a-zA-Z0-9]{2})\.tfrecord$")


def parse_shard(text: str) -> tuple[int, int]:
    """``"X,Y"`` -> (X, Y) with 1 <= X <= Y."""
    try:
        x, y = (int(v) for v in text.split(","))
    except ValueError:
        raise UsageError(
            f"--shard {text!r}: expected X,Y (for example 1,100: the first of 100 parts)"
        ) from None
    if not 1 <= x <= y:
        raise UsageError(f"--shard {text!r}: need 1 <= X <= Y")
    return x, y


def parse_partition(partition: str) -> tuple[str, str, str]:
    """``2/frame/train`` -> ("2", "frame", "train")."""
    parts = partition.strip("/").split("/")
    if len(parts) != 3 or not all(parts):
        raise UsageError(
            f"--partition {partition!r}: expected VERSION/KIND/SPLIT, for example 2/frame/train, "
            f"2/video/validate or 3/frame/validate"
        )
    return parts[0], parts[1], parts[2]


def in_shard(name: str, shard: tuple[int, int]) -> bool:
    x, y = shard
    return int(hashlib.md5(name.encode("utf-8")).hexdigest(), 16) % y == x - 1


def local_name(remote: str) -> str:
    """``traineh.tfrecord`` -> ``train0293.tfrecord`` (e=4, h=7: 4 * 62 + 7); other names are kept."""
    match = _NAME.match(remote)
    if not match or "/" in remote:
        return os.path.basename(remote)
    code = match["code"]
    index = CODE_ALPHABET.index(code[0]) * len(CODE_ALPHABET) + CODE_ALPHABET.index(code[1])
    return f"{match['prefix']}{index:04d}.tfrecord"


def file_md5(path: str | Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass
class DownloadResult:
    downloaded: list[str] = field(default_factory=list)
    present: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    bytes: int = 0

    @property
    def ok(self) -> bool:
        return not self.failed


class _Progress:
    """A plain-text progress line on stderr (redrawn in place on a terminal, one line per file otherwise)."""

    def __init__(self, total_files: int) -> None:
        self.total = total_files
        self.tty = sys.stderr.isatty()
        self.last = 0.0

    def update(
        self, index: int, name: str, done: int, size: int | None, started: float, *, final: bool = False
    ) -> None:
        now = time.monotonic()
        if not final and (not self.tty or now - self.last < 0.2):
            return
        self.last = now
        rate = done / max(now - started, 1e-6) / 1e6
        if size:
            width = 24
            filled = int(width * done / size)
            bar = f"[{'#' * filled}{'.' * (width - filled)}] {100 * done / size:5.1f}% of {size / 1e6:.1f} MB"
        else:
            bar = f"{done / 1e6:.1f} MB"
        line = f"[{index}/{self.total}] {name} {bar} {rate:.1f} MB/s"
        if self.tty:
            print("\r" + line + " " * 4, end="\n" if final else "", file=sys.stderr, flush=True)
        else:
            print(line, file=sys.stderr, flush=True)

    def message(self, text: str) -> None:
        print(text, file=sys.stderr, flush=True)


class _Permanent(Exception):
    """A failure that retrying will not fix (HTTP 404, ...)."""


def _open(url: str, timeout: float, offset: int = 0):
    request = urllib.request.Request(url, headers={"User-Agent": "yt8m-zoo"})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    try:
        return urllib.request.urlopen(request, timeout=timeout)  # noqa: S310 - http(s) URLs built above
    except urllib.error.HTTPError as exc:
        if 400 <= exc.code < 500 and exc.code not in (408, 416, 429):
            raise _Permanent(f"HTTP {exc.code} {exc.reason} for {url}") from None
        raise


def fetch_plan(
    partition: str, output: Path, *, base_url: str | None, timeout: float, retries: int, backoff: float
) -> dict[str, str]:
    """The plan ``{remote name: md5}``: the saved copy if present, else downloaded and saved atomically."""
    from zoo.atomic import atomic_write_text

    version, kind, split = parse_partition(partition)
    plan_path = output / f"{partition.strip('/').replace('/', '_')}_download_plan.json"
    if plan_path.is_file():
        text = plan_path.read_text()
        source = str(plan_path)
    else:
        url = f"{(base_url or OFFICIAL_PLAN_BASE).rstrip('/')}/{version}/download_plans/{kind}_{split}.json"
        text = None
        for attempt in range(retries + 1):
            try:
                with _open(url, timeout) as response:
                    text = response.read().decode("utf-8")
                break
            except _Permanent as exc:
                raise DataError(f"download plan {url}: {exc}; check --partition (and --base-url)") from None
            except (urllib.error.URLError, OSError) as exc:
                if attempt == retries:
                    raise DataError(
                        f"download plan {url}: {exc}; check the network (or --base-url) and try again"
                    ) from None
                time.sleep(backoff * 2**attempt)
        source = url
    try:
        plan = json.loads(text)
        files = plan["files"]
        if not isinstance(files, dict) or not all(isinstance(v, str) for v in files.values()):
            raise TypeError("files is not a mapping of names to md5 strings")
    except (ValueError, KeyError, TypeError) as exc:
        raise DataError(
            f"download plan {source}: not a valid plan ({exc}); delete {plan_path} if it is a "
            f"damaged local copy"
        ) from None
    if not plan_path.is_file():
        atomic_write_text(plan_path, text)
    return files


def _download_one(
    url: str, target: Path, md5: str, *, timeout: float, progress: _Progress, index: int
) -> int:
    """Fetch ``url`` into ``target`` via a partial file; returns bytes fetched. Raises on any failure."""
    partial = target.with_name(f".{target.name}.partial")
    offset = partial.stat().st_size if partial.exists() else 0
    if offset and file_md5(partial) == md5:  # complete, interrupted just before the rename
        os.replace(partial, target)
        return 0
    started = time.monotonic()
    fetched = 0
    try:
        response = _open(url, timeout, offset)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:
            partial.unlink()
            raise OSError("the server refused to resume the partial file; starting over") from None
        raise
    with response:
        status = getattr(response, "status", 200)
        if offset and status != 206:
            offset = 0  # the server ignored the Range request: start over
        length = response.headers.get("Content-Length")
        size = int(length) + offset if length and length.isdigit() else None
        with open(partial, "ab" if offset else "wb") as out:
            done = offset
            while chunk := response.read(_CHUNK):
                out.write(chunk)
                done += len(chunk)
                fetched += len(chunk)
                progress.update(index, target.name, done, size, started)
            out.flush()
            os.fsync(out.fileno())
    if size is not None and done != size:
        raise OSError(f"connection closed after {done} of {size} bytes")
    actual = file_md5(partial)
    if actual != md5:
        partial.unlink()
        raise ValueError(f"md5 mismatch (got {actual}, the plan says {md5}): the file arrived damaged")
    os.replace(partial, target)
    progress.update(index, target.name, done, size, started, final=True)
    return fetched


def download(
    partition: str,
    output: str | os.PathLike,
    *,
    shard: tuple[int, int] = (1, 1),
    mirror: str = "us",
    base_url: str | None = None,
    retries: int = 4,
    timeout: float = 60.0,
    backoff: float = 1.0,
    dry_run: bool = False,
) -> DownloadResult:
    """Download ``partition`` (or the ``shard`` part of it) into ``output``; see the module docstring.

    Raises :class:`DataError` naming every file that could not be fetched and verified (after trying all).
    """
    if base_url is None and mirror not in MIRRORS:
        raise UsageError(f"--mirror {mirror!r}: expected one of {', '.join(MIRRORS)}")
    parse_partition(partition)
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    plan = fetch_plan(partition, out, base_url=base_url, timeout=timeout, retries=retries, backoff=backoff)
    selected = sorted(name for name in plan if in_shard(name, shard))
    files_base = (
        (base_url.rstrip("/") if base_url else f"http://{mirror}.data.yt8m.org") + "/" + partition.strip("/")
    )
    locals_ = {name: local_name(name) for name in selected}
    clash = len(set(locals_.values())) != len(locals_)
    if clash:
        locals_ = {name: os.path.basename(name) for name in selected}
    progress = _Progress(len(selected))
    result = DownloadResult()
    if dry_run:
        for name in selected:
            print(f"{files_base}/{name} -> {out / locals_[name]} (md5 {plan[name]})")
        progress.message(f"{len(selected)} of {len(plan)} files in shard {shard[0]},{shard[1]}")
        return result
    progress.message(
        f"{partition}: {len(selected)} of {len(plan)} files (shard {shard[0]},{shard[1]}) into {out}"
    )
    for i, name in enumerate(selected, 1):
        target = out / locals_[name]
        md5 = plan[name].lower()
        if target.is_file():
            if file_md5(target) == md5:
                result.present.append(target.name)
                continue
            progress.message(f"{target}: md5 does not match the plan; downloading it again")
            target.unlink()
        url = f"{files_base}/{name}"
        for attempt in range(retries + 1):
            try:
                result.bytes += _download_one(url, target, md5, timeout=timeout, progress=progress, index=i)
                result.downloaded.append(target.name)
                break
            except _Permanent as exc:
                result.failed.append((target.name, str(exc)))
                progress.message(f"{target.name}: {exc}")
                break
            except (urllib.error.URLError, OSError, ValueError) as exc:
                reason = str(getattr(exc, "reason", exc))
                if attempt == retries:
                    result.failed.append((target.name, f"{reason} (after {retries + 1} attempts)"))
                    progress.message(f"{target.name}: giving up: {reason}")
                else:
                    wait = backoff * 2**attempt
                    progress.message(
                        f"{target.name}: {reason}; retrying in {wait:.1f}s ({attempt + 1}/{retries})"
                    )
                    time.sleep(wait)
    progress.message(
        f"done: {len(result.downloaded)} downloaded ({result.bytes / 1e6:.1f} MB), "
        f"{len(result.present)} already present and verified, {len(result.failed)} failed"
    )
    if result.failed:
        lines = "\n".join(f"  {name}: {reason}" for name, reason in result.failed)
        raise DataError(
            f"{len(result.failed)} file(s) could not be downloaded and verified (nothing damaged was "
            f"kept; run the same command again to retry them):\n{lines}"
        )
    return result

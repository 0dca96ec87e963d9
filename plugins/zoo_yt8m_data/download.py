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
  and fetched again (with backoff); if it keeps failing, the run ends with exit code 1 naming it;
- the plan is checked before anything is fetched: every entry must be a plain official file name (letters,
  digits, ``_.-``, ending in ``.tfrecord``), so every file, ``.partial`` ones included, stays inside
  ``--output``; a plan may list at most :data:`MAX_PLAN_FILES` files (an official plan lists 3,844);
- each transfer is bounded (:mod:`zoo.fetch`: its Content-Length, a cap, a stall rule). The cap is
  ``--max-file-mb`` or, by default, :data:`CAP_FACTOR` times the size of the largest official file of the
  partition's kind (:data:`OFFICIAL_FILE_MB`): a server announcing more is refused before a byte is written,
  and a body growing past it is deleted.

``--output`` may be an ``s3://`` or ``gs://`` prefix (:mod:`zoo.storage`): each file is then fetched and
md5-checked in a local staging folder (one file at a time, resumed the same way), uploaded as one object
(visible only once complete), recorded in ``{partition}_verified.json`` beside the data in the bucket, and
removed locally. A later run skips a file that this record lists with the plan's md5 and that is present.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import sys
import urllib.error
from dataclasses import dataclass, field
from pathlib import Path

from zoo import storage
from zoo.errors import DataError, UsageError
from zoo.fetch import DEFAULT_LIMITS, Limits, PermanentError, file_digest, open_url, retrying, transfer

OFFICIAL_PLAN_BASE = "http://data.yt8m.org"
MIRRORS = ("us", "eu", "asia")
PLAN_MAX_BYTES = 64 << 20  # the largest official plan is about 1 MB
MAX_PLAN_FILES = 20_000
"""Files a plan may list: an official plan lists 3,844 (62 x 62 two-letter codes)."""
OFFICIAL_FILE_MB = {"frame": 400, "video": 8}
"""About the largest official file of each kind, in MB: a frame-level train shard holds ~1,012 videos of at
most 300 one-second frames (1,152 bytes each), 1.53 TB over 11,532 shards; a video-level one ~1,012 mean
vectors (31 GB in all)."""
CAP_FACTOR = 4
"""The default ``--max-file-mb`` is this many times :data:`OFFICIAL_FILE_MB` of the partition's kind."""


def default_max_bytes(partition: str) -> int:
    """The default per-file cap of ``partition`` (``2/video/train`` -> 32 MiB, frame partitions 1600 MiB)."""
    kind = parse_partition(partition)[1]
    return CAP_FACTOR * OFFICIAL_FILE_MB.get(kind, OFFICIAL_FILE_MB["frame"]) << 20


CODE_ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
_NAME = re.compile(r"^(?P<prefix>.*?)(?P<code>[a-zA-Z0-9]{2})\.tfrecord$")
_PLAIN_NAME = re.compile(r"[A-Za-z0-9_.-]{1,200}\.tfrecord")


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
    if not match:
        return remote
    code = match["code"]
    index = CODE_ALPHABET.index(code[0]) * len(CODE_ALPHABET) + CODE_ALPHABET.index(code[1])
    return f"{match['prefix']}{index:04d}.tfrecord"


@dataclass
class DownloadResult:
    downloaded: list[str] = field(default_factory=list)
    present: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    bytes: int = 0

    @property
    def ok(self) -> bool:
        return not self.failed


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _read_plan_text(url: str, limits: Limits, retries: int, backoff: float) -> str:
    def get() -> str:
        with open_url(url, limits.timeout) as response:
            body = response.read(PLAN_MAX_BYTES + 1)
        if len(body) > PLAN_MAX_BYTES:
            raise PermanentError(f"{url} is larger than {PLAN_MAX_BYTES} bytes; not a download plan")
        return body.decode("utf-8", errors="replace")

    try:
        return retrying(get, retries=retries, backoff=backoff)
    except PermanentError as exc:
        raise DataError(f"download plan {url}: {exc}; check --partition (and --base-url)") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise DataError(
            f"download plan {url}: {exc}; check the network (or --base-url) and try again"
        ) from None


def parse_plan(text: str, source: str, plan_path: Path | None = None) -> dict[str, str]:
    """``{remote name: md5}`` from a plan's JSON text; a :class:`DataError` names the first bad entry.

    Names must be plain official file names (letters, digits, ``_.-``, ending in ``.tfrecord``): a name
    with a directory part, or ``..``, could make the server's bytes land outside ``--output``.
    """
    hint = f"; delete {plan_path} if it is a damaged local copy" if plan_path is not None else ""
    try:
        plan = json.loads(text)
    except ValueError as exc:
        raise DataError(f"download plan {source}: not JSON ({exc}){hint}") from None
    files = plan.get("files") if isinstance(plan, dict) else None
    if not isinstance(files, dict):
        raise DataError(f'download plan {source}: expected {{"files": {{name: md5}}}}{hint}')
    if len(files) > MAX_PLAN_FILES:
        raise DataError(
            f"download plan {source}: lists {len(files)} files, more than the {MAX_PLAN_FILES} a plan may "
            f"list (an official plan lists 3,844); refusing it{hint}"
        )
    for name, md5 in files.items():
        if not _PLAIN_NAME.fullmatch(name) or name.startswith("."):
            raise DataError(
                f"download plan {source}: entry {name[:80]!r} is not a plain file name (letters, digits, "
                f"_.-, ending in .tfrecord); refusing the plan so that nothing is written outside the "
                f"output folder{hint}"
            )
        if not isinstance(md5, str) or not re.fullmatch(r"[0-9a-fA-F]{32}", md5):
            raise DataError(f"download plan {source}: entry {name!r}: {str(md5)[:40]!r} is not an md5{hint}")
    return files


def fetch_plan(
    partition: str, output: Path, *, base_url: str | None, limits: Limits, retries: int, backoff: float
) -> dict[str, str]:
    """The plan ``{remote name: md5}``: the saved copy if present, else downloaded and saved atomically."""
    from zoo.atomic import atomic_write_text

    version, kind, split = parse_partition(partition)
    plan_path = output / f"{partition.strip('/').replace('/', '_')}_download_plan.json"
    if plan_path.is_file():
        try:
            text = plan_path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise DataError(
                f"download plan {plan_path}: cannot be read ({exc}); delete it to fetch it again"
            ) from None
        files = parse_plan(text, str(plan_path), plan_path)
    else:
        url = f"{(base_url or OFFICIAL_PLAN_BASE).rstrip('/')}/{version}/download_plans/{kind}_{split}.json"
        text = _read_plan_text(url, limits, retries, backoff)
        files = parse_plan(text, url)
        atomic_write_text(plan_path, text)
    return files


def _download_one(url: str, target: Path, md5: str, *, limits: Limits, label: str) -> int:
    """Fetch ``url`` into ``target`` via a partial file; returns bytes fetched. Raises on any failure."""
    partial = target.with_name(f".{target.name}.partial")
    if partial.exists() and file_digest(partial, "md5") == md5:  # complete, interrupted before the rename
        os.replace(partial, target)
        return 0
    fetched = transfer(url, partial, limits=limits, resume=True, label=label)
    actual = file_digest(partial, "md5")
    if actual != md5:
        partial.unlink()
        raise ValueError(f"md5 mismatch (got {actual}, the plan says {md5}): the file arrived damaged")
    os.replace(partial, target)
    return fetched


class _Store:
    """``--output`` in an object store: a local staging folder, the uploads and the record of verified files."""

    def __init__(self, url: str, partition: str) -> None:
        from zoo.paths import cache_dir

        storage.require_bucket(url)
        self.url = url.rstrip("/")
        self.shown = storage.redact(self.url)
        key = hashlib.sha256(f"{self.shown}\0{partition}".encode()).hexdigest()[:16]
        self.staging = cache_dir("download-staging", key)
        self.record_url = f"{self.url}/{partition.strip('/').replace('/', '_')}_verified.json"
        found = storage.stat(self.record_url)
        self.record: dict[str, str] = (
            json.loads(storage.read_bytes(self.record_url)) if found is not None and found.is_file else {}
        )

    def verified(self, name: str, md5: str) -> bool:
        return self.record.get(name) == md5 and storage.stat(f"{self.url}/{name}") is not None

    def publish(self, local: Path, md5: str) -> None:
        """Upload a verified file (one object, visible only when complete), record it, free the disk."""
        storage.upload_file(str(local), f"{self.url}/{local.name}")
        local.unlink()
        self.record[local.name] = md5
        with storage.atomic_output(self.record_url) as tmp:
            Path(tmp).write_text(json.dumps(self.record, indent=1, sort_keys=True))


def download(
    partition: str,
    output: str | os.PathLike,
    *,
    shard: tuple[int, int] = (1, 1),
    mirror: str = "us",
    base_url: str | None = None,
    retries: int = 4,
    limits: Limits = DEFAULT_LIMITS,
    backoff: float = 1.0,
    dry_run: bool = False,
) -> DownloadResult:
    """Download ``partition`` (or the ``shard`` part of it) into ``output``; see the module docstring.

    Raises :class:`DataError` naming every file that could not be fetched and verified (after trying all).
    """
    if base_url is None and mirror not in MIRRORS:
        raise UsageError(f"--mirror {mirror!r}: expected one of {', '.join(MIRRORS)}")
    parse_partition(partition)
    store = _Store(os.fspath(output), partition) if storage.is_url(os.fspath(output)) else None
    out = store.staging if store is not None else Path(output)
    out.mkdir(parents=True, exist_ok=True)
    plan = fetch_plan(partition, out, base_url=base_url, limits=limits, retries=retries, backoff=backoff)
    selected = sorted(name for name in plan if in_shard(name, shard))
    files_base = (
        (base_url.rstrip("/") if base_url else f"http://{mirror}.data.yt8m.org") + "/" + partition.strip("/")
    )
    locals_ = {name: local_name(name) for name in selected}
    if len(set(locals_.values())) != len(locals_):
        locals_ = {name: name for name in selected}
    result = DownloadResult()
    if dry_run:
        for name in selected:
            dest = f"{store.shown}/{locals_[name]}" if store is not None else out / locals_[name]
            print(f"{files_base}/{name} -> {dest} (md5 {plan[name]})")
        _say(f"{len(selected)} of {len(plan)} files in shard {shard[0]},{shard[1]}")
        return result
    where = store.shown if store is not None else out
    _say(f"{partition}: {len(selected)} of {len(plan)} files (shard {shard[0]},{shard[1]}) into {where}")
    for i, name in enumerate(selected, 1):
        target = out / locals_[name]
        md5 = plan[name].lower()
        if store is not None and store.verified(target.name, md5):
            result.present.append(target.name)
            continue
        if target.is_file():
            if file_digest(target, "md5") == md5:
                result.present.append(target.name)
                continue
            _say(f"{target}: md5 does not match the plan; downloading it again")
            target.unlink()
        url = f"{files_base}/{name}"

        def retry_note(exc: Exception, attempt: int, wait: float, name: str = target.name) -> None:
            _say(f"{name}: {getattr(exc, 'reason', exc)}; retrying in {wait:.1f}s ({attempt}/{retries})")

        try:
            result.bytes += retrying(
                functools.partial(
                    _download_one,
                    url,
                    target,
                    md5,
                    limits=limits,
                    label=f"[{i}/{len(selected)}] {target.name}",
                ),
                retries=retries,
                backoff=backoff,
                on_retry=retry_note,
            )
            if store is not None:
                store.publish(target, md5)
            result.downloaded.append(target.name)
        except PermanentError as exc:
            result.failed.append((target.name, str(exc)))
            _say(f"{target.name}: {exc}")
        except DataError as exc:  # the upload into the store failed (after its own retries)
            result.failed.append((target.name, str(exc)))
            _say(f"{target.name}: {exc}")
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = str(getattr(exc, "reason", exc))
            result.failed.append((target.name, f"{reason} (after {retries + 1} attempts)"))
            _say(f"{target.name}: giving up: {reason}")
    _say(
        f"done: {len(result.downloaded)} downloaded ({result.bytes / 1e6:.1f} MB), "
        f"{len(result.present)} already present and verified, {len(result.failed)} failed"
    )
    if result.failed:
        lines = "\n".join(f"  {name}: {reason}" for name, reason in result.failed)
        raise DataError(
            f"{len(result.failed)} file(s) could not be downloaded and verified (no damaged or over-size "
            f"file was kept; an interrupted one stays as .NAME.partial and is continued when you run the "
            f"same command again):\n{lines}"
        )
    return result

"""A run directory in a bucket: ``train.save_dir`` (``--save_dir``) as an ``s3://`` or ``gs://`` prefix.

An object store has no rename, no directories and no partially written objects, so a run cannot be written
in place the way :mod:`zoo.engine.runs.checkpoint` writes a local one (temporary name, then rename). Instead
the run is trained in a local staging copy (under the cache directory, one per URL) and mirrored to the
bucket by :class:`RunMirror`:

- every file is uploaded whole, as one object: S3 and GCS make an object visible only when its upload has
  completed (a single PUT, or the completion of a multipart or resumable upload), and a reader sees the
  previous object or the new one, never a mix;
- the files of a new checkpoint go up before the ``latest`` pointer that names it, and the objects of a
  checkpoint pruned locally are deleted only after that, so the bucket's ``latest`` always names a checkpoint
  whose files are all there (and its SHA256SUMS tells a damaged one apart, as on a local disk);
- a file is uploaded again only when it changed (size, modification time or inode);
- during training, uploads run on a thread of their own from a snapshot of hard links taken at the
  checkpoint (:meth:`RunMirror.push_in_background`): a process does not stall at a checkpoint while it
  uploads (the other ranks of a job would time out waiting for it), and the snapshot holds the checkpoint
  and the ``latest`` naming it as they were, whatever training writes meanwhile.

Every start (not only ``--resume``) first copies the bucket's run into the staging directory, so that the
bucket is the truth and refusing to train over a run, ``--overwrite`` (whose removals are mirrored) and
``--resume`` behave exactly as on a local directory. What neither store gives: an atomic change of several
objects (hence the order above), or a lock: two machines training into the same prefix overwrite each
other's objects (the run lock only covers the staging copy on one machine).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import posixpath
import shutil
import threading
from collections.abc import Callable
from pathlib import Path

from zoo import storage
from zoo.errors import UsageError

LATEST = "latest"
CHECKPOINTS = "checkpoints"
# the run lock and its owner note mean something on this machine only; temporary files are never published
_LOCAL_ONLY = ("run.lock", "run.lock.owner")


def is_bucket_run(save_dir: str | os.PathLike | None) -> bool:
    return save_dir is not None and storage.is_url(str(save_dir))


def local_run_dir(save_dir: str | os.PathLike) -> Path:
    """Where a run is written on this machine: ``save_dir`` itself, or the staging copy of a bucket URL."""
    text = str(save_dir)
    if not storage.is_url(text):
        return Path(storage.local_path(text))
    if storage.protocol(text) in ("http", "https"):
        raise UsageError(
            f"train.save_dir {storage.redact(text)}: http(s) URLs are read-only; train into a local "
            f"directory, s3:// or gs://"
        )
    from zoo.paths import cache_dir

    key = hashlib.sha256(storage.redact(text.rstrip("/")).encode()).hexdigest()[:16]
    name = posixpath.basename(text.rstrip("/").split("?")[0]) or "run"
    return cache_dir("runs", key) / name


Stamp = tuple[int, int, int]


def _published(rel: str) -> bool:
    parts = rel.split("/")
    if parts[-1] in _LOCAL_ONLY and len(parts) == 1:
        return False
    return not any(p.startswith(".") or p.endswith(".partial") for p in parts)


def _order(rel: str) -> tuple[int, str]:
    """Checkpoint files first, the ``latest`` pointer last, everything else between."""
    if rel.startswith(CHECKPOINTS + "/"):
        return (0, rel)
    return (2 if rel == LATEST else 1, rel)


class RunMirror:
    """Keeps the prefix ``url`` equal to the local run directory ``local``, one whole object per file."""

    def __init__(self, url: str, local: Path, *, log: Callable[[str], None] | None = None) -> None:
        self.url = url.rstrip("/")
        self.local = Path(local)
        self.log = log or (lambda _message: None)
        self.fs, self.base = storage.filesystem(self.url)
        self.base = self.base.rstrip("/")
        # what the bucket holds, as the local files it was copied from or to: rel -> stamp
        self.known: dict[str, Stamp] = self._scan()
        self._lock = threading.Lock()
        self._pending: tuple[Path, dict[str, Stamp]] | None = None
        self._worker: threading.Thread | None = None
        self._failure: Exception | None = None

    def _scan(self) -> dict[str, Stamp]:
        found: dict[str, Stamp] = {}
        if not self.local.is_dir():
            return found
        for folder, dirs, files in os.walk(self.local):
            dirs[:] = [d for d in dirs if not d.startswith(".") and not d.endswith(".partial")]
            for name in files:
                path = os.path.join(folder, name)
                rel = os.path.relpath(path, self.local).replace(os.sep, "/")
                if not _published(rel):
                    continue
                with contextlib.suppress(FileNotFoundError):  # removed while we looked: not published
                    st = os.stat(path)
                    found[rel] = (st.st_size, st.st_mtime_ns, st.st_ino)
        return found

    def _object(self, rel: str) -> str:
        return f"{self.base}/{rel}"

    def _shown(self, rel: str) -> str:
        return f"{self.url}/{rel}"

    def pull(self) -> int:
        """Replace the staging copy by the bucket's run (nothing there: an empty staging directory).
        Returns the number of objects copied. The bucket must exist (it is never created)."""
        from zoo.dirlock import DirectoryLock

        storage.check_output(self.url)
        lock = DirectoryLock(self.local / "run.lock").acquire()  # not while a run on this machine writes it
        try:
            return self._pull()
        finally:
            lock.release()

    def _pull(self) -> int:
        if self.local.exists():
            for entry in self.local.iterdir():
                if entry.name in _LOCAL_ONLY:
                    continue
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()
        self.local.mkdir(parents=True, exist_ok=True)
        copied = storage.download_tree(self.url, str(self.local), keep=_published, missing_ok=True)
        self.known = self._scan()
        if copied:
            self.log(f"{storage.redact(self.url)}: copied the run's {copied} files to {self.local}")
        return copied

    def push(self, *, under: str = "") -> list[str]:
        """Upload what changed since the last push (only files under ``under`` when given), then delete the
        objects of files removed locally; waits for a background push first. Returns the names uploaded."""
        self.wait()
        snapshot = self._snapshot(under)
        try:
            return self._upload(snapshot, under)
        finally:
            shutil.rmtree(snapshot[0], ignore_errors=True)

    def push_in_background(self) -> None:
        """Start a :meth:`push` on this mirror's thread and return at once, so that a training process does
        not stop at a checkpoint while it uploads (the other ranks of a job would time out waiting for it).

        The files are hard-linked into a private snapshot now, so what is uploaded is the run as it is at
        this moment (a checkpoint and the ``latest`` naming it), whatever training writes meanwhile. Only the
        newest waiting snapshot is kept; an upload that failed is raised by the next call (or :meth:`wait`)."""
        self._raise_failure()
        snapshot = self._snapshot("")
        with self._lock:
            stale, self._pending = self._pending, snapshot
            if self._worker is None or not self._worker.is_alive():
                self._worker = threading.Thread(target=self._drain, name="zoo-upload", daemon=True)
                self._worker.start()
        if stale is not None:
            shutil.rmtree(stale[0], ignore_errors=True)

    def wait(self) -> None:
        """Wait for background pushes to end; raise the error of one that failed."""
        worker = self._worker
        if worker is not None:
            worker.join()
        self._raise_failure()

    def _raise_failure(self) -> None:
        failure, self._failure = self._failure, None
        if failure is not None:
            raise failure

    def _drain(self) -> None:
        while True:
            with self._lock:
                snapshot, self._pending = self._pending, None
                if snapshot is None:
                    return
            try:
                self._upload(snapshot, "")
            except Exception as exc:  # noqa: BLE001 - handed to the training thread
                self._failure = exc
            finally:
                shutil.rmtree(snapshot[0], ignore_errors=True)

    def _snapshot(self, under: str) -> tuple[Path, dict[str, Stamp]]:
        """Hard links (copies where links are impossible) of the published files under ``under``, with
        their stamps, in a private folder of the staging copy (skipped by the scan: its name starts with .)."""
        import tempfile

        files = {rel: st for rel, st in self._scan().items() if rel.startswith(under)}
        folder = Path(tempfile.mkdtemp(prefix=".upload-", dir=self.local))
        kept: dict[str, Stamp] = {}
        for rel, st in files.items():
            source = self.local.joinpath(*rel.split("/"))
            target = folder.joinpath(*rel.split("/"))
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                try:
                    os.link(source, target)
                except OSError:
                    shutil.copy2(source, target)
            except FileNotFoundError:  # removed since the scan: not part of this snapshot
                continue
            kept[rel] = st
        return folder, kept

    def _upload(self, snapshot: tuple[Path, dict[str, Stamp]], under: str) -> list[str]:
        folder, current = snapshot
        changed = sorted((rel for rel, st in current.items() if self.known.get(rel) != st), key=_order)
        for rel in changed:
            path = folder.joinpath(*rel.split("/"))
            storage.call(
                lambda path=path, rel=rel: self.fs.put_file(str(path), self._object(rel)),
                self._shown(rel),
                "upload",
            )
            self.known[rel] = current[rel]
        gone = sorted(rel for rel in self.known if rel.startswith(under) and rel not in current)
        for rel in gone:

            def remove(rel: str = rel) -> None:
                with contextlib.suppress(FileNotFoundError):
                    self.fs.rm_file(self._object(rel))

            storage.call(remove, self._shown(rel), "delete")
            del self.known[rel]
        return changed

    def discard_staging(self) -> None:
        """Remove the staging copy (the run is all in the bucket)."""
        shutil.rmtree(self.local, ignore_errors=True)
        with contextlib.suppress(OSError):
            self.local.parent.rmdir()

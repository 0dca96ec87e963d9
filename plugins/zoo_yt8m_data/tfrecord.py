"""TFRecord framing without TensorFlow: read and write the container the YouTube-8M shards use.

A record is ``uint64 length (LE) | uint32 masked crc32c(length) | payload | uint32 masked crc32c(payload)``.
Reading checks both checksums by default; a bad payload checksum only spoils that record (the framing is
intact, so reading can go on with the next one), while a bad length checksum or a short read loses the
framing and ends the file.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable, Iterator
from typing import BinaryIO

import crc32c

from zoo.errors import DataError
from zoo.storage import ReadOptions, open_input, redact, size_of

_MASK_DELTA = 0xA282EAD8
_LENGTH = struct.Struct("<Q")
_CRC = struct.Struct("<I")
HEADER_BYTES = 12
FOOTER_BYTES = 4


def masked_crc(data: bytes | bytearray | memoryview) -> int:
    """The TFRecord checksum: crc32c rotated right by 15 bits plus a constant (mod 2**32).

    The interpreter lock is kept (``gil_release_mode=0``): a record's checksum takes microseconds, and
    releasing the lock for it (crc32c's default above 32 KiB) handed the interpreter to the threads that
    fetch remote blocks, the reader then waiting to get it back (11x the checksum's own time, measured)."""
    crc = crc32c.crc32c(data, gil_release_mode=0)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


class RecordError(DataError):
    """A damaged record: names the file and the record index; ``recoverable`` says if reading can go on."""

    def __init__(
        self,
        path: str,
        index: int,
        offset: int | None,
        problem: str,
        *,
        recoverable: bool,
        advice: str | None = None,
    ) -> None:
        self.path = path
        self.index = index
        self.offset = offset
        self.problem = problem
        self.recoverable = recoverable
        what = "" if recoverable else " (the rest of the file cannot be framed)"
        at = f" (byte offset {offset})" if offset is not None else ""
        advice = advice or (
            "the file is damaged or incomplete: download it again (`zoo data download` resumes and checks md5)"
        )
        super().__init__(
            f"{path}: record {index}{at}: {problem}{what}; {advice}, or pass --skip-corrupt "
            f"(data.skip_corrupt: true) to skip damaged records"
        )


def frame(payload: bytes) -> bytes:
    """One framed record."""
    length = _LENGTH.pack(len(payload))
    return b"".join((length, _CRC.pack(masked_crc(length)), payload, _CRC.pack(masked_crc(payload))))


class TFRecordWriter:
    """Writes framed records to an open binary file (the caller owns atomicity, e.g. ``zoo.atomic``)."""

    def __init__(self, file: BinaryIO) -> None:
        self._file = file
        self.count = 0

    def write(self, payload: bytes) -> None:
        self._file.write(frame(payload))
        self.count += 1


def write_tfrecord(path: str | os.PathLike, payloads: list[bytes]) -> None:
    """Write ``payloads`` as one TFRecord file, atomically."""
    from zoo.atomic import atomic_path

    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        writer = TFRecordWriter(f)
        for payload in payloads:
            writer.write(payload)


def read_records(
    path: str,
    *,
    verify_crc: bool = True,
    select: Callable[[int], bool] | None = None,
    on_corrupt: Callable[[RecordError], None] | None = None,
    remote: ReadOptions | None = None,
) -> Iterator[tuple[int, memoryview | None]]:
    """Yield ``(index, payload)`` for each record of ``path``; the payload is a read-only memoryview.

    ``path`` may be a URL (``s3://``, ``gs://``, ``https://``): it is streamed with the read-ahead, retries and
    cache of ``remote`` (:mod:`zoo.storage`), with the same checks and the same messages as a local file.

    ``select(index)`` false: the payload is skipped with a seek and ``None`` is yielded in its place (workers
    that read every n-th record of a file do not read the others). Damage raises :class:`RecordError`, or,
    with ``on_corrupt``, is handed to it (it may raise) and reading goes on when the framing allows.
    The file is read unbuffered, payload and footer in one system call: each byte is copied once, from the
    page cache straight into the object the decoded frames point into.
    """

    def damaged(error: RecordError) -> bool:
        if on_corrupt is None:
            raise error
        on_corrupt(error)
        return error.recoverable

    f = open_input(path, remote)
    path = redact(path)
    with f:
        size = size_of(f)
        index = 0
        offset = 0

        def read(n: int) -> bytes:
            data = f.read(n)
            while 0 < len(data) < n:  # a short read before the end of a regular file is rare but legal
                more = f.read(n - len(data))
                if not more:
                    break
                data += more
            return data

        unpack_len = _LENGTH.unpack_from
        unpack_crc = _CRC.unpack_from
        while True:
            header = read(HEADER_BYTES)
            if not header:
                return
            if len(header) < HEADER_BYTES:
                damaged(
                    RecordError(
                        path,
                        index,
                        offset,
                        f"truncated header ({len(header)} of 12 bytes)",
                        recoverable=False,
                    )
                )
                return
            if index == 0 and header[:2] == b"\x1f\x8b":
                raise DataError(
                    f"{path}: is gzip-compressed; YouTube-8M shards are plain TFRecords: "
                    f"decompress it first (gunzip)"
                )
            (length,) = unpack_len(header)
            if verify_crc and masked_crc(header[:8]) != unpack_crc(header, 8)[0]:
                damaged(RecordError(path, index, offset, "length checksum mismatch", recoverable=False))
                return
            end = offset + HEADER_BYTES + length + FOOTER_BYTES
            if end > size:
                damaged(
                    RecordError(
                        path,
                        index,
                        offset,
                        f"truncated: the record needs {length + FOOTER_BYTES} more bytes, the file has "
                        f"{size - offset - HEADER_BYTES}",
                        recoverable=False,
                    )
                )
                return
            if select is not None and not select(index):
                f.seek(length + FOOTER_BYTES, os.SEEK_CUR)
                yield index, None
            else:
                body = read(length + FOOTER_BYTES)
                if len(body) < length + FOOTER_BYTES:  # the file shrank while reading
                    damaged(RecordError(path, index, offset, "truncated while reading", recoverable=False))
                    return
                payload = memoryview(body)[:length]
                if verify_crc and masked_crc(payload) != unpack_crc(body, length)[0]:
                    damaged(RecordError(path, index, offset, "payload checksum mismatch", recoverable=True))
                else:
                    yield index, payload
            offset = end
            index += 1


def count_records(
    path: str,
    *,
    verify_crc: bool = True,
    on_corrupt: Callable[[RecordError], None] | None = None,
    remote: ReadOptions | None = None,
) -> int:
    """Number of records in ``path`` from the headers alone (seeks over the payloads; a remote object's
    read-ahead still fetches the blocks in between, so counting one reads it once).

    With ``on_corrupt``, damage that ends the framing is handed to it and the records before it count.
    """
    return sum(
        1
        for _ in read_records(
            path, verify_crc=verify_crc, select=lambda _i: False, on_corrupt=on_corrupt, remote=remote
        )
    )

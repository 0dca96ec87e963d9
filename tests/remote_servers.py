"""Real storage servers on 127.0.0.1 for the remote-data tests: moto's S3 server, gcp-storage-emulator and an
HTTP file server (byte ranges, directory index pages, and connections it can drop mid-body on purpose)."""

from __future__ import annotations

import contextlib
import html
import os
import re
import socket
import struct
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

# gcsfs (2026) turns on by default an extension that asks Google's gRPC storage-control service for each
# bucket's layout; against an emulator that call would leave the machine. The tests keep gcsfs on plain JSON.
os.environ["GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT"] = "false"

ACCESS_KEY = "AKIDZOOTEST0000"
SECRET_KEY = "zoo-test-secret-never-printed"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _forget_filesystems() -> None:
    """fsspec caches file-system instances; a new endpoint (another test's server) needs new ones."""
    from fsspec.implementations.http import HTTPFileSystem

    HTTPFileSystem.clear_instance_cache()
    with contextlib.suppress(ImportError):
        import s3fs

        s3fs.S3FileSystem.clear_instance_cache()
    with contextlib.suppress(ImportError):
        import gcsfs

        gcsfs.GCSFileSystem.clear_instance_cache()


@contextlib.contextmanager
def s3_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """moto's S3 server on a free loopback port; the environment points s3fs at it (yields its endpoint)."""
    pytest.importorskip("s3fs")
    moto_server = pytest.importorskip("moto.server")
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=free_port(), verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    for key, value in {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    _forget_filesystems()
    try:
        yield endpoint
    finally:
        server.stop()
        _forget_filesystems()


@contextlib.contextmanager
def gcs_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """gcp-storage-emulator on a free loopback port, in memory; gcsfs finds it through STORAGE_EMULATOR_HOST
    and connects anonymously (FSSPEC_GCS_TOKEN=anon: no credential lookup, no metadata server)."""
    pytest.importorskip("gcsfs")
    emulator = pytest.importorskip("gcp_storage_emulator.server")
    import fsspec.config

    port = free_port()
    server = emulator.create_server("127.0.0.1", port, in_memory=True)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", endpoint)
    monkeypatch.setenv("FSSPEC_GCS_TOKEN", "anon")
    monkeypatch.setitem(fsspec.config.conf, "gcs", {**fsspec.config.conf.get("gcs", {}), "token": "anon"})
    _forget_filesystems()
    try:
        yield endpoint
    finally:
        server.stop()
        _forget_filesystems()


class LoopbackServer(ThreadingHTTPServer):
    """An HTTP server on a free port of 127.0.0.1, a thread per connection."""

    daemon_threads = True

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Quiet:
    """What the handlers here share: keep-alive connections, no request log on stderr."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:
        pass


class FileServer(LoopbackServer):
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.drop_left = 0  # GETs of a file that send half their body and then close the connection
        self.reset = False  # close them abortively (the client sees a connection reset)
        self.gets = 0
        self.drops = 0
        self.log: list[tuple[str, str]] = []  # (path, Range header) of every GET, in arrival order
        self.lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _Handler)


class _Handler(_Quiet, SimpleHTTPRequestHandler):
    server: FileServer

    def _target(self) -> Path:
        rel = unquote(urlsplit(self.path).path).lstrip("/")
        return self.server.root / rel

    def do_HEAD(self) -> None:  # noqa: N802
        self._serve(body=False)

    def do_GET(self) -> None:  # noqa: N802
        self._serve(body=True)

    def _serve(self, body: bool) -> None:
        target = self._target()
        if target.is_dir():
            names = sorted(p.name + ("/" if p.is_dir() else "") for p in target.iterdir())
            page = "".join(f'<a href="{html.escape(n)}">{html.escape(n)}</a>\n' for n in names).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            if body:
                self.wfile.write(page)
            return
        if not target.is_file():
            self.send_error(404)
            return
        data = target.read_bytes()
        start, end = 0, len(data)
        ranged = self.headers.get("Range")
        if ranged and ranged.startswith("bytes="):
            first, _, last = ranged[6:].partition("-")
            start = int(first)
            end = min(len(data), int(last) + 1) if last else len(data)
        part = data[start:end]
        self.send_response(206 if ranged else 200)
        self.send_header("Content-Length", str(len(part)))
        self.send_header("Accept-Ranges", "bytes")
        if ranged:
            self.send_header("Content-Range", f"bytes {start}-{end - 1}/{len(data)}")
        self.end_headers()
        if not body:
            return
        with self.server.lock:
            self.server.gets += 1
            self.server.log.append((urlsplit(self.path).path, ranged or ""))
            drop = self.server.drop_left > 0 and len(part) > 1
            if drop:
                self.server.drop_left -= 1
                self.server.drops += 1
        if drop:  # half the promised body, then (once the client has it) the connection goes away
            self.wfile.write(part[: len(part) // 2])
            self.wfile.flush()
            time.sleep(0.2)
            self.close_connection = True
            with contextlib.suppress(OSError):
                if self.server.reset:  # an abortive close: the client sees ECONNRESET, not an end of file
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    self.connection.close()
                else:
                    self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.wfile.write(part)


@contextlib.contextmanager
def http_server(root: Path) -> Iterator[FileServer]:
    server = FileServer(root)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _forget_filesystems()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


class DroppingProxy:
    """A TCP proxy on 127.0.0.1 in front of ``upstream`` (host, port) that cuts one connection after it has
    passed ``cut_after`` bytes of answers (``drop_left`` times), and records the ``Range`` headers asked for."""

    def __init__(self, upstream: tuple[str, int], cut_after: int) -> None:
        self.upstream = upstream
        self.cut_after = cut_after
        self.drop_left = 0
        self.drops = 0
        self.ranges: list[tuple[int, int]] = []
        self.lock = threading.Lock()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.upstream)
            threading.Thread(target=self._requests, args=(client, server), daemon=True).start()
            threading.Thread(target=self._answers, args=(server, client), daemon=True).start()

    def _requests(self, client: socket.socket, server: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := client.recv(1 << 16):
                for first, last in re.findall(rb"(?i)range: bytes=(\d+)-(\d+)", data):
                    with self.lock:
                        self.ranges.append((int(first), int(last)))
                server.sendall(data)
        with contextlib.suppress(OSError):
            server.shutdown(socket.SHUT_WR)

    def _answers(self, server: socket.socket, client: socket.socket) -> None:
        passed = 0
        with contextlib.suppress(OSError):
            while data := server.recv(1 << 16):
                with self.lock:
                    cut = self.drop_left > 0 and passed + len(data) > self.cut_after
                    if cut:
                        self.drop_left -= 1
                        self.drops += 1
                if cut:  # what fits under the limit, then the connection goes away
                    client.sendall(data[: self.cut_after - passed])
                    time.sleep(0.2)
                    break
                client.sendall(data)
                passed += len(data)
        for sock in (client, server):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def close(self) -> None:
        self.listener.close()


class S3Front(LoopbackServer):
    """An HTTP front on 127.0.0.1 for moto's S3 server at ``upstream`` (its endpoint URL): every request is
    forwarded there and the answer relayed, and each is recorded (method, path, whether its query carries a
    signature, Range header). ``refuse_signed`` GETs with a signed query are answered 403 instead, as S3
    answers a pre-signed URL that has expired."""

    def __init__(self, upstream: str) -> None:
        self.upstream = urlsplit(upstream).netloc
        self.refuse_signed = 0
        self.log: list[tuple[str, str, bool, str]] = []
        self.lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _Forward)


class _Forward(_Quiet, BaseHTTPRequestHandler):
    server: S3Front

    def do_GET(self) -> None:  # noqa: N802
        self._forward()

    do_HEAD = do_PUT = do_POST = do_DELETE = do_GET  # noqa: N815

    def _forward(self) -> None:
        import http.client

        parts = urlsplit(self.path)
        signed = bool(re.search(r"(?i)(^|&)(x-amz-signature|signature)=", parts.query))
        with self.server.lock:
            self.server.log.append((self.command, parts.path, signed, self.headers.get("Range", "")))
            refuse = signed and self.command == "GET" and self.server.refuse_signed > 0
            if refuse:
                self.server.refuse_signed -= 1
        if refuse:
            page = b"<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>"
            self.send_response(403)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)
            return
        length = int(self.headers.get("Content-Length") or 0)
        payload = self.rfile.read(length) if length else None
        connection = http.client.HTTPConnection(self.server.upstream, timeout=60)
        connection.request(self.command, self.path, payload, dict(self.headers.items()))
        answer = connection.getresponse()
        data = answer.read()
        self.send_response(answer.status)
        for name, value in answer.getheaders():
            if name.lower() not in ("transfer-encoding", "connection", "content-length", "server", "date"):
                self.send_header(name, value)
        # a HEAD's answer says the length of the body a GET would have
        self.send_header(
            "Content-Length",
            answer.getheader("Content-Length", "0") if self.command == "HEAD" else str(len(data)),
        )
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
        connection.close()


@contextlib.contextmanager
def s3_front(upstream: str) -> Iterator[S3Front]:
    server = S3Front(upstream)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def upload_dir(local: Path, url: str) -> None:
    """Every file under ``local`` to the prefix ``url`` (bucket created when missing)."""
    from zoo.storage import filesystem

    fs, base = filesystem(url)
    bucket = base.split("/", 1)[0]
    if not fs.exists(bucket):
        fs.mkdir(bucket)
    for path in sorted(local.rglob("*")):
        if path.is_file():
            fs.pipe_file(f"{base.rstrip('/')}/{path.relative_to(local).as_posix()}", path.read_bytes())


__all__ = [
    "ACCESS_KEY",
    "DroppingProxy",
    "S3Front",
    "SECRET_KEY",
    "gcs_server",
    "http_server",
    "s3_front",
    "s3_server",
    "upload_dir",
]

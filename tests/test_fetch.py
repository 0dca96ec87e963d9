"""zoo.fetch: every transfer is bounded (announced size, a maximum, a stall rule) against a real local server."""

from __future__ import annotations

import hashlib
import http.server
import threading
import time

import pytest

from zoo.fetch import (
    Limits,
    PermanentError,
    TooLarge,
    TransferError,
    file_digest,
    retrying,
    sha256_file,
    transfer,
)


class Endless(http.server.BaseHTTPRequestHandler):
    """/forever streams without a Content-Length; /trickle sends a byte every 50 ms; /liar announces 1000
    bytes and sends more; /short announces 1000 and sends 10."""

    protocol_version = "HTTP/1.0"

    def log_message(self, *args):
        pass

    def do_GET(self):  # noqa: N802 - http.server API
        try:
            self.send_response(404 if self.path == "/missing" else 200)
            if self.path == "/liar":
                self.send_header("Content-Length", "1000")
            if self.path == "/short":
                self.send_header("Content-Length", "1000")
            if self.path == "/huge":
                self.send_header("Content-Length", str(10**12))
            self.end_headers()
            if self.path in ("/forever", "/liar", "/huge"):
                while True:
                    self.wfile.write(b"x" * 65536)
            elif self.path == "/trickle":
                while True:
                    self.wfile.write(b"x")
                    self.wfile.flush()
                    time.sleep(0.05)
            elif self.path == "/short":
                self.wfile.write(b"y" * 10)
        except (BrokenPipeError, ConnectionResetError):
            pass


@pytest.fixture(scope="module")
def server():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Endless)
    srv.daemon_threads = True
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


def test_an_endless_body_is_cut_at_the_maximum_and_deleted(server, tmp_path):
    dest = tmp_path / "f"
    with pytest.raises(TooLarge, match="more than the 1048576 bytes allowed.*deleted"):
        transfer(f"{server}/forever", dest, limits=Limits(max_bytes=1 << 20), quiet=True)
    assert not dest.exists()  # what an over-size transfer wrote is gone
    dest.write_bytes(b"z" * 1000)  # a resumed partial counts against the cap too
    with pytest.raises(TooLarge):
        transfer(f"{server}/forever", dest, limits=Limits(max_bytes=1 << 20), resume=True, quiet=True)
    assert not dest.exists()


def test_an_announced_size_above_the_cap_is_refused_before_a_byte_is_written(server, tmp_path):
    """The server announces 10**12 bytes and streams without end: the cap holds whatever the headers say."""
    dest = tmp_path / "f"
    started = time.monotonic()
    with pytest.raises(TooLarge, match="announces 1000000000000 bytes, more than the 1048576 allowed"):
        transfer(f"{server}/huge", dest, limits=Limits(max_bytes=1 << 20), quiet=True)
    assert not dest.exists()
    assert time.monotonic() - started < 5
    assert isinstance(TooLarge("x"), PermanentError)  # retrying() does not try it again


def test_a_body_longer_than_announced_is_cut_at_the_content_length(server, tmp_path):
    dest = tmp_path / "f"
    assert transfer(f"{server}/liar", dest, limits=Limits(max_bytes=1 << 30), quiet=True) == 1000
    assert dest.stat().st_size == 1000
    with pytest.raises(TransferError, match="connection closed after 10 of 1000 bytes"):
        transfer(f"{server}/short", dest, quiet=True)


def test_a_trickle_is_ended_by_the_stall_rule(server, tmp_path):
    """Each read returns within the timeout, so only the rate over a window can end this transfer."""
    started = time.monotonic()
    with pytest.raises(TransferError, match="stalled"):
        transfer(
            f"{server}/trickle",
            tmp_path / "f",
            limits=Limits(timeout=5, stall_seconds=0.5, min_rate=1000),
            quiet=True,
        )
    assert time.monotonic() - started < 5


def test_retrying_stops_at_permanent_errors_and_counts_attempts(server, tmp_path):
    with pytest.raises(PermanentError, match="HTTP 404"):
        retrying(lambda: transfer(f"{server}/missing", tmp_path / "f", quiet=True), retries=3, backoff=0)
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise TransferError("broken")
        return "ok"

    assert retrying(flaky, retries=2, backoff=0) == "ok" and len(calls) == 3
    with pytest.raises(TransferError):
        retrying(lambda: (_ for _ in ()).throw(TransferError("always")), retries=1, backoff=0)


def test_digests(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"abc")
    assert sha256_file(path) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert file_digest(path, "md5") == hashlib.md5(b"abc").hexdigest()

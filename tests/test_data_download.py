"""`zoo data download` against a real HTTP server on 127.0.0.1: plan, shards, naming, md5, resume, damage."""

from __future__ import annotations

import hashlib
import http.server
import json
import threading
from collections import Counter

import pytest
from zoo_yt8m_data.download import MAX_PLAN_FILES, default_max_bytes, download, in_shard, local_name

import zoo
from zoo.cli import main

NAMES = [
    "trainaa.tfrecord",
    "trainab.tfrecord",
    "trainba.tfrecord",
    "trainZ9.tfrecord",
    "trainxy.tfrecord",
    "traincd.tfrecord",
    "trainbb.tfrecord",
]


class Site:
    """What data.yt8m.org serves, with switches to damage files."""

    def __init__(self) -> None:
        self.files = {
            name: hashlib.sha256(name.encode()).digest() * (2000 + i * 300) for i, name in enumerate(NAMES)
        }
        self.plan = {"files": {n: hashlib.md5(d).hexdigest() for n, d in self.files.items()}}
        self.corrupt: set[str] = set()
        self.fail_once: set[str] = set()
        self.requests: Counter[str] = Counter()
        self.ranges: list[tuple[str, str]] = []
        self.lie: int | None = None  # announce this Content-Length for every file and stream without end


@pytest.fixture()
def site():
    state = Site()

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):  # keep test output clean
            pass

        def do_GET(self):  # noqa: N802 - http.server API
            state.requests[self.path] = state.requests[self.path] + 1
            if self.path == "/2/download_plans/frame_train.json":
                return self._send(json.dumps(state.plan).encode())
            prefix = "/2/frame/train/"
            name = self.path[len(prefix) :] if self.path.startswith(prefix) else None
            if name not in state.files:
                self.send_error(404)
                return None
            if name in state.fail_once:
                state.fail_once.discard(name)
                self.send_error(503)
                return None
            data = state.files[name]
            if state.lie is not None:
                self.send_response(200)
                self.send_header("Content-Length", str(state.lie))
                self.end_headers()
                try:
                    while True:
                        self.wfile.write(b"j" * 65536)
                except (BrokenPipeError, ConnectionResetError):
                    return None
            if name in state.corrupt:
                data = data[:100] + bytes([data[100] ^ 1]) + data[101:]
            start = 0
            header = self.headers.get("Range")
            if header:
                state.ranges.append((name, header))
                start = int(header.split("=")[1].split("-")[0])
            return self._send(data[start:], status=206 if header else 200)

        def _send(self, body, status=200):
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


def test_official_names_and_shards():
    assert local_name("trainaa.tfrecord") == "train0000.tfrecord"
    assert local_name("trainab.tfrecord") == "train0001.tfrecord"
    assert local_name("traineh.tfrecord") == "train0255.tfrecord"  # e=4, h=7: 4 * 62 + 7
    assert local_name("validate99.tfrecord") == "validate3843.tfrecord"  # the last of 62 * 62 = 3844
    names = [f"train{a}{b}.tfrecord" for a in "abc" for b in "abcdefgh"]
    parts = [[n for n in names if in_shard(n, (x, 3))] for x in (1, 2, 3)]
    assert sorted(sum(parts, [])) == sorted(names) and all(parts)
    assert parts[0] == [n for n in names if int(hashlib.md5(n.encode()).hexdigest(), 16) % 3 == 0]


def test_download_shard_verify_and_resume(site, tmp_path):
    out = tmp_path / "frame"
    result = download("2/frame/train", out, shard=(1, 2), base_url=site.url, backoff=0.01)
    expected = {local_name(n) for n in NAMES if in_shard(n, (1, 2))}
    assert set(result.downloaded) == expected and 0 < len(expected) < len(NAMES)
    assert {p.name for p in out.iterdir()} == expected | {"2_frame_train_download_plan.json"}
    for name in NAMES:
        if local_name(name) in expected:
            assert (out / local_name(name)).read_bytes() == site.files[name]
    # the second run finds every file present and verified: no file is fetched again, nor the plan
    before = sum(site.requests.values())
    again = download("2/frame/train", out, shard=(1, 2), base_url=site.url, backoff=0.01)
    assert again.downloaded == [] and set(again.present) == expected
    assert sum(site.requests.values()) == before
    # the other half completes the set
    rest = download("2/frame/train", out, shard=(2, 2), base_url=site.url, backoff=0.01)
    assert set(rest.downloaded) | expected == {local_name(n) for n in NAMES}


def test_interrupted_download_continues_with_a_range_request(site, tmp_path):
    out = tmp_path / "d"
    out.mkdir()
    name = "trainba.tfrecord"
    shard = next((x, 6) for x in range(1, 7) if in_shard(name, (x, 6)))
    partial = out / f".{local_name(name)}.partial"
    partial.write_bytes(site.files[name][:5000])
    result = download("2/frame/train", out, shard=shard, base_url=site.url, backoff=0.01)
    assert local_name(name) in result.downloaded
    assert (out / local_name(name)).read_bytes() == site.files[name] and not partial.exists()
    assert (name, "bytes=5000-") in site.ranges


def test_corrupted_file_is_never_kept(site, tmp_path, capsys):
    bad = "trainab.tfrecord"
    site.corrupt.add(bad)
    out = tmp_path / "d"
    code = main(
        [
            "data",
            "download",
            "--partition",
            "2/frame/train",
            "--output",
            str(out),
            "--base-url",
            site.url,
            "--retries",
            "1",
        ]
    )
    assert code == 1
    err = capsys.readouterr().err
    assert local_name(bad) in err and "md5 mismatch" in err
    names = {p.name for p in out.iterdir()}
    assert local_name(bad) not in names and not any(n.endswith(".partial") for n in names)
    assert site.requests[f"/2/frame/train/{bad}"] == 2  # tried again once, then gave up
    assert len(names) == len(NAMES)  # every other file plus the plan
    # the server is fixed: the same command fetches only the missing file
    site.corrupt.clear()
    assert (
        main(
            ["data", "download", "--partition", "2/frame/train", "--output", str(out), "--base-url", site.url]
        )
        == 0
    )
    assert (out / local_name(bad)).read_bytes() == site.files[bad]


def test_transient_server_error_is_retried(site, tmp_path):
    site.fail_once.add("traincd.tfrecord")
    result = download("2/frame/train", tmp_path, base_url=site.url, backoff=0.01)
    assert local_name("traincd.tfrecord") in result.downloaded
    assert site.requests["/2/frame/train/traincd.tfrecord"] == 2


def test_a_local_file_with_the_wrong_md5_is_replaced(site, tmp_path):
    name = "trainaa.tfrecord"
    (tmp_path / local_name(name)).write_bytes(b"stale")
    result = download("2/frame/train", tmp_path, shard=(1, 1), base_url=site.url, backoff=0.01)
    assert local_name(name) in result.downloaded
    assert (tmp_path / local_name(name)).read_bytes() == site.files[name]


def test_usage_and_plan_errors(site, tmp_path, capsys):
    assert (
        main(["data", "download", "--partition", "2/frame/train", "--shard", "0,3", "-o", str(tmp_path)]) == 2
    )
    assert main(["data", "download", "--partition", "frame", "-o", str(tmp_path)]) == 2
    assert (
        main(["data", "download", "--partition", "2/frame/train", "--mirror", "mars", "-o", str(tmp_path)])
        == 2
    )
    with pytest.raises(zoo.DataError, match="HTTP 404"):
        download("2/frame/nosuch", tmp_path, base_url=site.url, backoff=0.01)
    capsys.readouterr()
    assert (
        main(
            [
                "data",
                "download",
                "--partition",
                "2/frame/train",
                "-o",
                str(tmp_path),
                "--base-url",
                site.url,
                "--dry-run",
            ]
        )
        == 0
    )
    assert "trainaa.tfrecord -> " in capsys.readouterr().out
    assert not (tmp_path / "train0000.tfrecord").exists()


@pytest.mark.parametrize(
    "entry",
    [
        "sub/trainaa.tfrecord",
        "../trainaa.tfrecord",
        "/tmp/x.tfrecord",
        ".hidden.tfrecord",
        "a b.tfrecord",
        "train.partial",
        "trainaa.tfrecord/",
        "tr\\ain.tfrecord",
        "",
    ],
)
def test_a_plan_naming_anything_but_a_plain_file_is_refused(site, tmp_path, entry):
    """Server-chosen names never place bytes outside --output: the whole plan is refused, naming the entry."""
    site.plan = {"files": {"trainaa.tfrecord": site.plan["files"]["trainaa.tfrecord"], entry: "0" * 32}}
    out = tmp_path / "out"
    with pytest.raises(zoo.DataError, match="not a plain file name") as info:
        download("2/frame/train", out, base_url=site.url, backoff=0.01)
    assert repr(entry[:80]) in str(info.value)
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["out"]  # nothing fetched, not even the plan
    assert site.requests["/2/frame/train/trainaa.tfrecord"] == 0


def test_a_saved_plan_is_checked_too(tmp_path):
    (tmp_path / "2_frame_train_download_plan.json").write_text(
        json.dumps({"files": {"sub/x.tfrecord": "0" * 32}})
    )
    with pytest.raises(zoo.DataError, match=r"'sub/x.tfrecord' is not a plain file name.*delete"):
        download("2/frame/train", tmp_path, base_url="http://127.0.0.1:9", backoff=0.01)


def test_a_lying_server_is_held_to_the_cap_and_its_bytes_are_deleted(site, tmp_path, capsys):
    """Announcing 10**12 bytes is refused before a byte is written; announcing a small size but streaming on
    is cut at that size; announcing nothing (the endless case) is cut at --max-file-mb and deleted."""
    site.lie = 10**12
    out = tmp_path / "d"
    argv = ["data", "download", "--partition", "2/frame/train", "-o", str(out), "--base-url", site.url]
    assert main([*argv, "--max-file-mb", "1", "--retries", "0"]) == 1
    err = capsys.readouterr().err
    assert "announces 1000000000000 bytes, more than the 1048576 allowed" in err
    assert "no damaged or over-size file was kept" in err
    assert sorted(p.name for p in out.iterdir()) == ["2_frame_train_download_plan.json"]
    # one request per file: a size the cap refuses is not retried
    assert all(site.requests[f"/2/frame/train/{n}"] == 1 for n in NAMES)


def test_the_default_cap_follows_the_official_file_sizes_and_plans_are_bounded(site, tmp_path, capsys):
    assert default_max_bytes("2/frame/train") == 1600 << 20
    assert default_max_bytes("2/video/validate") == 32 << 20
    site.lie = (1600 << 20) + 1  # just above the frame-level default
    out = tmp_path / "d"
    assert (
        main(["data", "download", "--partition", "2/frame/train", "-o", str(out), "--base-url", site.url])
        == 1
    )
    assert f"more than the {1600 << 20} allowed" in capsys.readouterr().err
    too_many = {f"train{i:06d}.tfrecord": "0" * 32 for i in range(MAX_PLAN_FILES + 1)}
    site.plan = {"files": too_many}
    with pytest.raises(zoo.errors.DataError, match=f"lists {MAX_PLAN_FILES + 1} files, more than the"):
        download("2/frame/train", tmp_path / "f", base_url=site.url, retries=0, dry_run=True)

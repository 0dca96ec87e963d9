"""Data where it lives: s3://, gs:// and http(s):// URLs read through zoo.storage, against real servers on
127.0.0.1 (moto's S3 server, gcp-storage-emulator, an HTTP file server) started by these tests."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from remote_servers import (
    ACCESS_KEY,
    SECRET_KEY,
    DroppingProxy,
    FileServer,
    _Handler,
    gcs_server,
    http_server,
    s3_front,
    s3_server,
    upload_dir,
)
from test_data_download import site  # noqa: F401 - the fake data.yt8m.org, a fixture

from zoo import storage
from zoo.data.sources import expand_paths
from zoo.errors import DataError, UsageError

ZOO = str(Path(sys.executable).with_name("zoo"))
SMALL_BLOCKS = {"read_ahead_block": "4KiB", "read_ahead_blocks": 3}  # many ranged reads per file


def frame_reader(paths, **options):
    import zoo

    return zoo.build_reader("yt8m-frame", paths=[str(p) for p in paths], num_classes=12, **options)


def shard_names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.glob("*.tfrecord"))


def records(reader) -> list[tuple[str, list[int], bytes]]:
    return [(r["id"], r["labels"], r["rgb"].tobytes() + r["audio"].tobytes()) for r in reader]


# -- without a server ------------------------------------------------------------------------------------


def test_credentials_in_urls_are_redacted():
    assert storage.redact("https://ann:pw123@host/a.tfrecord") == "https://***@host/a.tfrecord"
    assert (
        storage.redact("failed: s3://b/k?X-Amz-Signature=abc123&X-Amz-Credential=AKID%2F1&x=1 then")
        == "failed: s3://b/k?X-Amz-Signature=***&X-Amz-Credential=***&x=1 then"
    )
    assert (  # a pre-signed URL of the older kind (signature version 2)
        storage.redact("http://h/b/k?AWSAccessKeyId=AKID1&Signature=c2ln&Expires=1")
        == "http://h/b/k?AWSAccessKeyId=***&Signature=***&Expires=1"
    )
    assert storage.redact("gs://bucket/frame/train*.tfrecord") == "gs://bucket/frame/train*.tfrecord"
    assert storage.redact("/data/user@host/x") == "/data/user@host/x"


def test_url_recognition_and_sizes():
    assert storage.is_url("s3://b/k") and storage.is_url("HTTPS://h/x") and storage.is_url("gs://b")
    assert not storage.is_url("/data/x.tfrecord") and not storage.is_url("file:///data/x")
    assert storage.parse_size("8MiB") == 8 << 20 and storage.parse_size("512k") == 512 << 10
    assert storage.parse_size(4096) == 4096 and storage.parse_size("2G") == 2 << 30
    with pytest.raises(UsageError, match="not a size"):
        storage.parse_size("lots")


def test_file_urls_are_local_paths(tiny_data):
    train = tiny_data / "train"
    assert expand_paths([f"file://{train}"], patterns=("*.tfrecord",)) == expand_paths([str(train)])


def test_a_missing_protocol_package_names_the_extra(monkeypatch):
    import fsspec

    registry = sys.modules["fsspec.registry"]._registry  # the module (fsspec.registry is its public view)
    monkeypatch.setitem(sys.modules, "s3fs", None)  # as if the [s3] extra were not installed
    monkeypatch.delitem(registry, "s3", raising=False)
    assert fsspec
    with pytest.raises(UsageError, match=r"s3://bucket/x: s3:// is not installed; install the \[s3\] extra"):
        storage.filesystem("s3://bucket/x")


def test_a_run_directory_cannot_be_an_http_url():
    from zoo.engine.runs.bucket import local_run_dir

    with pytest.raises(
        UsageError, match=r"train.save_dir https://\*\*\*@h/runs/x: http\(s\) URLs are read-only"
    ):
        local_run_dir("https://ann:pw@h/runs/x")


def test_an_unknown_protocol_is_a_usage_error():
    with pytest.raises(UsageError, match="unknown protocol nosuch://"):
        storage.filesystem("nosuch://bucket/x")


# -- S3 (moto) -------------------------------------------------------------------------------------------


@pytest.fixture
def s3(monkeypatch):
    with s3_server(monkeypatch) as endpoint:
        yield endpoint


@pytest.mark.integration
def test_s3_prefixes_globs_and_list_files_name_the_same_videos_as_local_files(tiny_data, s3, tmp_path):
    upload_dir(tiny_data, "s3://yt8m/frame/")
    local = records(frame_reader([tiny_data / "train"]))
    by_prefix = frame_reader(["s3://yt8m/frame/train/"], **SMALL_BLOCKS)
    first, second = shard_names(tiny_data / "train")
    assert by_prefix.sources() == [f"s3://yt8m/frame/train/{first}", f"s3://yt8m/frame/train/{second}"]
    assert records(by_prefix) == local
    assert frame_reader(["s3://yt8m/frame/train/train*.tfrecord"]).sources() == by_prefix.sources()
    # a list file in the bucket with a relative line and an absolute URL line
    fs, _ = storage.filesystem("s3://yt8m")
    fs.pipe_file(
        "yt8m/frame/train.list",
        f"# the seed's list format\ntrain/{first}\ns3://yt8m/frame/train/{second}\n".encode(),
    )
    assert frame_reader(["s3://yt8m/frame/train.list"]).sources() == by_prefix.sources()
    # a local list file whose lines are URLs
    listed = tmp_path / "remote.list"
    listed.write_text("\n".join(by_prefix.sources()) + "\n")
    assert records(frame_reader([listed])) == local
    # counting from the headers agrees too
    reader = frame_reader(by_prefix.sources())
    assert [reader.count(s) for s in reader.sources()] == [30, 30]


@pytest.mark.integration
def test_a_damaged_object_is_reported_like_a_damaged_file(tiny_data, s3, tmp_path):
    data = bytearray((tiny_data / "train" / shard_names(tiny_data / "train")[0]).read_bytes())
    data[40] ^= 0xFF  # inside the first record's payload
    damaged = tmp_path / "damaged.tfrecord"
    damaged.write_bytes(bytes(data))
    upload_dir(tmp_path, "s3://broken/")
    with pytest.raises(DataError) as local:
        records(frame_reader([damaged]))
    with pytest.raises(DataError) as remote:
        records(frame_reader(["s3://broken/damaged.tfrecord"], **SMALL_BLOCKS))
    assert str(remote.value) == str(local.value).replace(str(damaged), "s3://broken/damaged.tfrecord")
    assert "record 0" in str(remote.value) and "payload checksum mismatch" in str(remote.value)
    # and skipped the same way with skip_corrupt
    kept = records(frame_reader(["s3://broken/damaged.tfrecord"], skip_corrupt=True))
    assert kept == records(frame_reader([damaged], skip_corrupt=True)) and len(kept) == 29
    # a truncated object: the framing error of a truncated file
    data[40] ^= 0xFF
    (tmp_path / "damaged.tfrecord").write_bytes(bytes(data[: len(data) - 100]))
    upload_dir(tmp_path, "s3://broken/")
    with pytest.raises(DataError, match=r"s3://broken/damaged.tfrecord: record \d+ .*truncated"):
        records(frame_reader(["s3://broken/damaged.tfrecord"]))


@pytest.mark.integration
def test_a_missing_bucket_or_key_is_a_clear_error(tiny_data, s3):
    upload_dir(tiny_data / "train", "s3://present/")
    with pytest.raises(DataError, match=r"s3://absent/train/: no such bucket 'absent'"):
        expand_paths(["s3://absent/train/"])
    with pytest.raises(DataError, match=r"s3://present/nothing.tfrecord: no such object or prefix"):
        expand_paths(["s3://present/nothing.tfrecord"])
    with pytest.raises(DataError, match=r"s3://present/x\*.tfrecord: the pattern matches no object"):
        expand_paths(["s3://present/x*.tfrecord"])
    with pytest.raises(DataError, match=r"s3://present/gone.tfrecord: no such object"):
        storage.RemoteFile("s3://present/gone.tfrecord")
    # the command line: exit 1, one line naming the URL, no traceback, no secret
    result = subprocess.run(
        [ZOO, "data", "inspect", "s3://absent/train/"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 1, result.stderr
    assert "no such bucket 'absent'" in result.stderr and "Traceback" not in result.stderr
    assert SECRET_KEY not in result.stderr + result.stdout and ACCESS_KEY not in result.stderr


@pytest.mark.integration
def test_zoo_data_inspect_reads_a_bucket(tiny_data, s3):
    upload_dir(tiny_data, "s3://yt8m/")
    result = subprocess.run(
        [ZOO, "data", "inspect", "s3://yt8m/train/", "--json", "--num-classes", "12"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    local = subprocess.run(
        [ZOO, "data", "inspect", str(tiny_data / "train"), "--json", "--num-classes", "12"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0 and local.returncode == 0, result.stderr + local.stderr
    remote_report, local_report = json.loads(result.stdout), json.loads(local.stdout)
    for report in (remote_report, local_report):
        del report["files"]  # the same but for the paths
    assert remote_report == local_report and remote_report["records"] == 60


@pytest.mark.integration
def test_the_cache_keeps_remote_files_within_its_bound(tiny_data, s3, tmp_path):
    upload_dir(tiny_data / "train", "s3://yt8m/train/")
    cache = tmp_path / "cache"
    first = shard_names(tiny_data / "train")[0]
    size = (tiny_data / "train" / first).stat().st_size
    reader = frame_reader(["s3://yt8m/train/"], cache=str(cache), cache_size=str(size + size // 2))
    assert records(reader) == records(frame_reader([tiny_data / "train"]))
    kept = [p for p in cache.rglob("*") if p.is_file()]
    assert len(kept) == 1 and sum(p.stat().st_size for p in kept) <= size + size // 2  # one evicted
    fs, _ = storage.filesystem("s3://yt8m")
    fs.rm(f"yt8m/train/{first}")  # the cached copy is not a reason to skip a stat
    with pytest.raises(DataError, match="no such object"):
        records(frame_reader([f"s3://yt8m/train/{first}"], cache=str(cache)))


def read_through_a_dropping_proxy(url: str, endpoint: str, variable: str, monkeypatch) -> DroppingProxy:
    """Upload 40,000 bytes to ``url``, then read them back in 10,000-byte blocks through a proxy in front of
    the server at ``endpoint`` (``variable`` points the client at it) that cuts one answer midway."""
    from urllib.parse import urlsplit

    import remote_servers

    payload = np.random.default_rng(2).integers(0, 255, 40_000, dtype=np.uint8).tobytes()
    fs, path = storage.filesystem(url)
    fs.mkdir(path.split("/")[0])
    fs.pipe_file(path, payload)
    upstream = urlsplit(endpoint)
    proxy = DroppingProxy((upstream.hostname, upstream.port), cut_after=6000)
    try:
        monkeypatch.setenv(variable, proxy.url)
        remote_servers._forget_filesystems()
        proxy.drop_left = 1
        options = storage.ReadOptions(block_size=10_000, blocks=0, retry=storage.Retry(backoff=0.01))
        with storage.RemoteFile(url, options) as f:
            assert f.read() == payload
    finally:
        proxy.close()
    return proxy


def assert_resumed_at_the_byte(proxy: DroppingProxy) -> None:
    assert proxy.drops == 1
    resumed = [(first, last) for first, last in proxy.ranges if first % 10_000]
    assert len(resumed) == 1, proxy.ranges  # one request started inside a block: where the cut one stopped
    first, last = resumed[0]
    assert last == (first // 10_000 + 1) * 10_000 - 1  # and asked for the rest of that block only
    assert [r for r in proxy.ranges if r[0] % 10_000 == 0] == [
        (i, i + 9_999) for i in range(0, 40_000, 10_000)
    ]


@pytest.mark.integration
def test_a_dropped_s3_response_is_resumed_at_the_byte_where_it_stopped(s3, monkeypatch):
    """moto behind a proxy that cuts the connection in the middle of a ranged GET's body: the next request
    asks for the rest of that range only, and the bytes are the object's."""
    proxy = read_through_a_dropping_proxy("s3://dropped/blob.bin", s3, "AWS_ENDPOINT_URL", monkeypatch)
    assert_resumed_at_the_byte(proxy)


@pytest.mark.integration
def test_a_dropped_gcs_response_is_resumed_at_the_byte_where_it_stopped(monkeypatch):
    with gcs_server(monkeypatch) as endpoint:
        proxy = read_through_a_dropping_proxy(
            "gs://dropped-gcs/blob.bin", endpoint, "STORAGE_EMULATOR_HOST", monkeypatch
        )
    assert_resumed_at_the_byte(proxy)


# -- HTTP --------------------------------------------------------------------------------------------------


@pytest.mark.integration
def test_a_server_that_drops_connections_mid_file_is_survived(tiny_data, capfd):
    with http_server(tiny_data) as server:
        first = shard_names(tiny_data / "train")[0]
        url = f"{server.url}/train/{first}"
        server.drop_left = 3
        got = records(frame_reader([url], **SMALL_BLOCKS))
        assert server.drops == 3
    assert got == records(frame_reader([tiny_data / "train" / first]))
    assert "retry 1" in capfd.readouterr().err


@pytest.mark.integration
@pytest.mark.parametrize("reset", [False, True], ids=["closed", "reset"])
def test_a_dropped_response_is_resumed_at_the_byte_where_it_stopped(tmp_path, reset):
    """The server sends half of a block's range and closes the connection (or resets it): the next request
    asks for the other half only."""
    payload = np.random.default_rng(1).integers(0, 255, 40_000, dtype=np.uint8).tobytes()
    (tmp_path / "blob.bin").write_bytes(payload)
    with http_server(tmp_path) as server:
        server.drop_left = 1
        server.reset = reset
        options = storage.ReadOptions(block_size=10_000, blocks=0, retry=storage.Retry(backoff=0.01))
        with storage.RemoteFile(f"{server.url}/blob.bin", options) as f:
            assert f.read() == payload
        ranges = [rng for _path, rng in server.log]
    assert server.drops == 1
    assert ranges == [
        "bytes=0-9999",  # dropped after 5000 bytes
        "bytes=5000-9999",  # the rest of that block, not all of it again
        "bytes=10000-19999",
        "bytes=20000-29999",
        "bytes=30000-39999",
    ]


@pytest.mark.integration
def test_http_directories_and_list_files(tiny_data, tmp_path):
    first, second = shard_names(tiny_data / "train")
    served = tmp_path / "served"  # the session's dataset plus a list file, without writing into the dataset
    served.mkdir()
    (served / "train").symlink_to(tiny_data / "train", target_is_directory=True)
    (served / "urls.list").write_text(f"train/{first}\n")
    with http_server(served) as server:
        assert frame_reader([f"{server.url}/train/"]).sources() == [
            f"{server.url}/train/{first}",
            f"{server.url}/train/{second}",
        ]
        assert frame_reader([f"{server.url}/urls.list"]).sources() == [f"{server.url}/train/{first}"]
        with pytest.raises(DataError, match=r"http://127.0.0.1:\d+/nothing.tfrecord: no such object"):
            expand_paths([f"{server.url}/nothing.tfrecord"])
        # a password in the URL never reaches a message
        with pytest.raises(DataError) as failed:
            storage.RemoteFile(server.url.replace("//", "//ann:hunter2@") + "/absent.tfrecord")
        assert "hunter2" not in str(failed.value) and "***@" in str(failed.value)


@pytest.mark.integration
def test_memory_is_bounded_by_the_read_ahead_not_the_file(tmp_path):
    """A RemoteFile holds at most (blocks + 1) blocks, whatever the object's size."""
    payload = np.random.default_rng(0).integers(0, 255, 3 << 20, dtype=np.uint8).tobytes()
    (tmp_path / "big.bin").write_bytes(payload)
    with http_server(tmp_path) as server:
        options = storage.ReadOptions(block_size=64 << 10, blocks=2)
        with storage.RemoteFile(f"{server.url}/big.bin", options) as f:
            most = 0
            pieces = []
            while piece := f.read(10_000):
                pieces.append(piece)
                most = max(most, len(f._blocks))
            assert b"".join(pieces) == payload
            assert most <= options.blocks + 1


# -- training from a store equals training from local files -------------------------------------------------


def train(data: dict[str, str], run: Path, *extra: str) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    from zoo.config import load_config
    from zoo.engine.train.trainer import Trainer

    overrides = [
        "dataset.preset=yt8m",
        "dataset.num_classes=12",
        f"data.train={json.dumps([data['train']])}",
        f"data.valid={json.dumps([data['valid']])}",
        "data.shuffle_buffer=16",
        "train.batch_size=8",
        "train.epoch=1",
        "train.max_iter=5",
        "train.learning_rate=0.01",
        f"train.save_dir={json.dumps(str(run))}",
        "eval.batch_size=32",
        "train.num_gpus=1",
        *extra,
    ]
    Trainer(load_config(None, overrides, model="mean-pool"), progress=False).fit()
    return load_file(str(run / "model.safetensors"))


@pytest.fixture(scope="module")
def local_run(tiny_data, tmp_path_factory, paddle):
    run = tmp_path_factory.mktemp("local-run") / "run"
    train({"train": str(tiny_data / "train"), "valid": str(tiny_data / "validate")}, run)
    return run


@pytest.fixture(scope="module")
def local_weights(local_run):
    from safetensors.numpy import load_file

    return load_file(str(local_run / "model.safetensors"))


def assert_same(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def no_secrets_in(run: Path) -> None:
    for path in run.rglob("*"):
        if path.is_file() and path.suffix in (".json", ".jsonl", ".csv", ".txt", ".log", ""):
            text = path.read_bytes()
            assert SECRET_KEY.encode() not in text and ACCESS_KEY.encode() not in text, path


@pytest.mark.integration
def test_training_from_s3_equals_training_from_local_files(tiny_data, s3, tmp_path, local_weights, capfd):
    upload_dir(tiny_data, "s3://yt8m/")
    data = {"train": "s3://yt8m/train/", "valid": "s3://yt8m/validate/"}
    assert_same(train(data, tmp_path / "run", "data.read_ahead_block=4KiB"), local_weights)
    no_secrets_in(tmp_path / "run")
    out = capfd.readouterr()
    assert SECRET_KEY not in out.out + out.err
    # two DataLoader worker processes reading the bucket: the same weights as two workers on local files
    two = train(data, tmp_path / "workers", "data.num_workers=2")
    local_two = train(
        {"train": str(tiny_data / "train"), "valid": str(tiny_data / "validate")},
        tmp_path / "local-workers",
        "data.num_workers=2",
    )
    assert_same(two, local_two)


@pytest.mark.integration
def test_training_from_gcs_equals_training_from_local_files(tiny_data, monkeypatch, tmp_path, local_weights):
    with gcs_server(monkeypatch):
        upload_dir(tiny_data, "gs://yt8m-gcs/frame/")
        data = {
            "train": "gs://yt8m-gcs/frame/train/train*.tfrecord",
            "valid": "gs://yt8m-gcs/frame/validate/",
        }
        assert_same(train(data, tmp_path / "run"), local_weights)


@pytest.mark.integration
def test_training_from_http_equals_training_from_local_files(tiny_data, tmp_path, local_weights):
    with http_server(tiny_data) as server:
        server.drop_left = 2  # and survives a flaky server on the way
        base = server.url.replace("http://", "http://ann:hunter2@")  # credentials in the URL ...
        data = {"train": f"{base}/train/", "valid": f"{base}/validate/"}
        assert_same(train(data, tmp_path / "run", "data.read_ahead_block=8KiB"), local_weights)
        assert server.drops == 2
    for path in (tmp_path / "run").rglob("*"):  # ... never reach the run directory
        assert not path.is_file() or b"hunter2" not in path.read_bytes(), path
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["data"]["train"] == [f"{server.url.replace('http://', 'http://***@')}/train/"]


@pytest.mark.integration
def test_paddlevideo_pickles_read_from_a_url_as_from_a_file(tmp_path):
    import pickle

    import zoo

    rng = np.random.default_rng(4)
    videos = [
        {
            "video": f"p{i}".encode(),
            "feature": rng.integers(0, 256, (5, 1024), dtype=np.uint8),
            "audio": rng.integers(0, 256, (5, 128), dtype=np.uint8),
            "label": [i, 7],
            "nframes": np.int32(5),
        }
        for i in range(3)
    ]
    (tmp_path / "train0000.pkl").write_bytes(pickle.dumps(videos, protocol=2))
    local = list(zoo.build_reader("paddlevideo-pkl", paths=[str(tmp_path)]))
    with http_server(tmp_path) as server:
        remote = list(zoo.build_reader("paddlevideo-pkl", paths=[f"{server.url}/train0000.pkl"]))
    assert [r["id"] for r in remote] == [r["id"] for r in local] == ["p0", "p1", "p2"]
    for a, b in zip(remote, local):
        np.testing.assert_array_equal(a["rgb"], b["rgb"])


@pytest.mark.integration
def test_zoo_data_download_streams_verified_shards_into_a_bucket(site, s3, capsys):  # noqa: F811
    from test_data_download import NAMES
    from zoo_yt8m_data.download import download, local_name

    with pytest.raises(DataError, match="s3://mirror/2/frame/train: no such bucket 'mirror'"):
        download("2/frame/train", "s3://mirror/2/frame/train", base_url=site.url, backoff=0.01)
    assert sum(site.requests.values()) == 0  # refused before anything was fetched
    fs, _ = storage.filesystem("s3://mirror")
    fs.mkdir("mirror")
    result = download("2/frame/train", "s3://mirror/2/frame/train", base_url=site.url, backoff=0.01)
    names = {local_name(n) for n in NAMES}
    assert set(result.downloaded) == names
    for name in NAMES:
        assert fs.cat_file(f"mirror/2/frame/train/{local_name(name)}") == site.files[name]
    record = json.loads(fs.cat_file("mirror/2/frame/train/2_frame_train_verified.json"))
    assert record == {local_name(n): site.plan["files"][n] for n in NAMES}
    # a second run finds every object verified and present: nothing is fetched again
    before = sum(site.requests.values())
    again = download("2/frame/train", "s3://mirror/2/frame/train", base_url=site.url, backoff=0.01)
    assert set(again.present) == names and again.downloaded == []
    assert sum(site.requests.values()) == before
    # a damaged download never reaches the bucket
    lost = local_name(NAMES[0])
    fs.rm(f"mirror/2/frame/train/{lost}")
    site.corrupt.add(NAMES[0])
    with pytest.raises(DataError, match=lost):
        download("2/frame/train", "s3://mirror/2/frame/train", base_url=site.url, retries=1, backoff=0.01)
    assert not fs.exists(f"mirror/2/frame/train/{lost}")


@pytest.mark.integration
def test_weights_runs_and_outputs_in_a_bucket(tiny_data, s3, tmp_path, local_run):
    """--weights from a run directory in a bucket, data from the bucket, predictions written to the bucket:
    the same files as the same command on local paths; a #sha256= fragment is checked."""
    import hashlib

    from zoo.engine.infer.ensemble import load_member
    from zoo.engine.runs.weights import read_weights

    upload_dir(tiny_data, "s3://yt8m/")
    upload_dir(local_run, "s3://runs/mean-pool/")
    fs, _ = storage.filesystem("s3://out")
    fs.mkdir("out")
    common = ["-o", "predict.formats=[jsonl, kaggle-csv]"]
    remote = subprocess.run(
        [ZOO, "predict", "--weights", "s3://runs/mean-pool", "--filelist", "s3://yt8m/test/"]
        + ["--output", "s3://out/predictions", *common],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )
    assert remote.returncode == 0, remote.stderr[-3000:]
    assert "s3://out/predictions/predictions.jsonl" in remote.stdout
    local = subprocess.run(
        [ZOO, "predict", "--weights", str(local_run), "--filelist", str(tiny_data / "test")]
        + ["--output", str(tmp_path / "local"), *common],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )
    assert local.returncode == 0, local.stderr[-3000:]
    for name in ("predictions.jsonl", "predictions.csv"):
        assert fs.cat_file(f"out/predictions/{name}") == (tmp_path / "local" / name).read_bytes(), name
    assert SECRET_KEY not in remote.stdout + remote.stderr
    # zoo score against labelled records in the bucket: the same scores as against the local files
    scores = [
        subprocess.run(
            [ZOO, "score", "--predictions", str(tmp_path / "local" / "predictions.csv")]
            + ["--data", data, "--num-classes", "12", "--json"],
            capture_output=True,
            text=True,
            timeout=600,
            cwd=tmp_path,
        )
        for data in ("s3://yt8m/test/", str(tiny_data / "test"))
    ]
    assert all(r.returncode == 0 for r in scores), scores[0].stderr[-2000:] + scores[1].stderr[-2000:]
    assert json.loads(scores[0].stdout) == json.loads(scores[1].stdout)
    # a prediction file in the bucket is an ensemble member like a local one
    member = load_member("s3://out/predictions/predictions.jsonl", None, "test", 20, progress=False)
    assert len(member.ids) == 24
    # a weights file with its checksum; a wrong one is refused and nothing is kept
    digest = hashlib.sha256((local_run / "model.safetensors").read_bytes()).hexdigest()
    loaded = read_weights(f"s3://runs/mean-pool/model.safetensors#sha256={digest}")
    assert loaded.state.keys() == read_weights(str(local_run)).state.keys()
    with pytest.raises(DataError, match="does not match the expected"):
        read_weights(f"s3://runs/mean-pool/history.jsonl#sha256={'0' * 64}")
    # a bucket that does not exist is refused before anything is computed
    failed = subprocess.run(
        [ZOO, "predict", "--weights", str(local_run), "--filelist", str(tiny_data / "test")]
        + ["--output", "s3://nowhere/predictions"],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )
    assert failed.returncode == 1 and "no such bucket 'nowhere'" in failed.stderr, failed.stderr[-2000:]
    assert "weights:" not in failed.stderr  # refused before the model was even loaded


@pytest.mark.integration
def test_zoo_data_pack_from_a_bucket_into_a_bucket_and_read_back(tiny_data, s3, tmp_path):
    from zoo_yt8m_data.packing import pack

    upload_dir(tiny_data / "train", "s3://yt8m/train/")
    fs, _ = storage.filesystem("s3://packed")
    fs.mkdir("packed")
    pack(["s3://yt8m/train/"], "s3://packed/train", num_classes=12, jobs=1, progress=False)
    names = sorted(p.rsplit("/", 1)[-1] for p in fs.find("packed/train"))
    assert "index.json" in names and ".pack.lock" not in names
    # a packed prefix reads as packed data (copied once to local disk: it is memory-mapped)
    reader = frame_reader(["s3://packed/train/"], cache=str(tmp_path / "cache"))
    assert all(not storage.is_url(s) for s in reader.sources())
    assert records(reader) == records(frame_reader([tiny_data / "train"]))


@pytest.mark.integration
def test_data_dir_may_be_a_bucket_prefix(tiny_data, s3):
    from zoo.config import load_config
    from zoo.engine.build import with_data_dir

    upload_dir(tiny_data, "s3://yt8m/frame/")
    cfg = with_data_dir(load_config(None, ["dataset.preset=yt8m"], model="mean-pool"), "s3://yt8m/frame")
    assert cfg.data.train == ["s3://yt8m/frame/train/"]
    assert cfg.data.valid == ["s3://yt8m/frame/validate/"] and cfg.data.test == ["s3://yt8m/frame/test/"]
    with pytest.raises(UsageError, match="no train/ or valid/"):
        with_data_dir(load_config(None, ["dataset.preset=yt8m"], model="mean-pool"), "s3://yt8m/frame/train")


@pytest.mark.integration
def test_the_next_file_is_in_flight_while_the_current_one_is_read(tiny_data):
    """The pipeline tells the reader which file comes next: its first blocks are requested before the
    current file's last ones, and the open that follows uses them (no block is fetched twice)."""
    from zoo.data.pipeline import batches

    first, second = shard_names(tiny_data / "train")
    with http_server(tiny_data) as server:
        reader = frame_reader([f"{server.url}/train/"], read_ahead_block="4KiB", read_ahead_blocks=2)
        spec = reader.spec
        got = sum(len(b["labels"]) for b in batches(reader, spec=spec, batch_size=8, shuffle=False))
        log = [(path.rsplit("/", 1)[-1], rng) for path, rng in server.log]
    assert got == 60
    firsts = [i for i, (name, _) in enumerate(log) if name == first]
    seconds = [i for i, (name, _) in enumerate(log) if name == second]
    assert seconds[0] < firsts[-1]  # the second file started before the first was done
    assert len(set(log)) == len(log)  # and nothing was fetched twice


def test_no_file_is_fetched_twice_when_the_next_is_named_before_the_current_is_opened(tiny_data, tmp_path):
    """The pipeline names task i+1's file as task i starts, before task i's file (named the same way one
    task earlier) is opened: with four files, every block is still fetched once."""
    from zoo.data.pipeline import batches

    shards = sorted((tiny_data / "train").iterdir())
    (tmp_path / "train").mkdir()
    for i in range(4):
        shutil.copy(shards[i % len(shards)], tmp_path / "train" / f"part{i}.tfrecord")
    with http_server(tmp_path) as server:
        reader = frame_reader([f"{server.url}/train/"], read_ahead_block="4KiB", read_ahead_blocks=2)
        got = sum(len(b["labels"]) for b in batches(reader, spec=reader.spec, batch_size=8, shuffle=False))
        log = [(path.rsplit("/", 1)[-1], rng) for path, rng in server.log]
    assert got == 120
    assert len(set(log)) == len(log), [entry for entry in log if log.count(entry) > 1][:3]


# -- a run directory in a bucket ---------------------------------------------------------------------------


def bucket_objects(url: str) -> dict[str, bytes]:
    """Every object under the prefix ``url``, by its name relative to the prefix."""
    fs, base = storage.filesystem(url)
    fs.invalidate_cache()
    base = base.rstrip("/") + "/"
    return {name[len(base) :]: fs.cat_file(name) for name in fs.find(base)}


def train_into(save_dir: str, data: Path, *extra: str, resume: bool = False, allow=()) -> Path:
    """The module's training run with ``train.save_dir`` at ``save_dir``; returns the staging copy."""
    from zoo.config import load_config
    from zoo.engine.train.trainer import Trainer

    overrides = [
        "dataset.preset=yt8m",
        "dataset.num_classes=12",
        f"data.train={json.dumps([str(data / 'train')])}",
        f"data.valid={json.dumps([str(data / 'validate')])}",
        "data.shuffle_buffer=16",
        "train.batch_size=8",
        "train.epoch=1",
        "train.max_iter=5",
        "train.learning_rate=0.01",
        f"train.save_dir={json.dumps(save_dir)}",
        "eval.batch_size=32",
        "train.num_gpus=1",
        *extra,
    ]
    trainer = Trainer(load_config(None, overrides, model="mean-pool"), progress=False)
    trainer.fit(resume=resume, allow_changes=tuple(allow))
    return trainer.run_dir


def weights_from(blob: bytes) -> dict[str, np.ndarray]:
    from safetensors.numpy import load

    return load(blob)


def check_bucket_run(url: str, tiny_data: Path, local_weights) -> None:
    """Train into ``url``, resume from it with no local copy left, refuse to train over it."""
    import shutil

    from zoo.errors import ZooError

    staging = train_into(url, tiny_data, "train.checkpoint_steps=2")
    objects = bucket_objects(url)
    assert_same(weights_from(objects["model.safetensors"]), local_weights)
    assert objects["latest"] == b"step-00000005\n"
    steps = sorted({name.split("/")[1] for name in objects if name.startswith("checkpoints/")})
    assert steps == ["step-00000004", "step-00000005"]  # step 2, pruned locally, is gone from the bucket too
    for name in ("model.safetensors", "optimizer.safetensors", "state.json", "SHA256SUMS"):
        assert f"checkpoints/step-00000005/{name}" in objects
    assert "config.json" in objects and "history.jsonl" in objects
    assert not any(name.startswith("run.lock") or ".partial" in name for name in objects), sorted(objects)
    for name, blob in objects.items():  # the staging copy and the bucket agree file for file
        assert (staging / name).read_bytes() == blob, name
    # a run stopped at step 3, its staging copy lost, resumed from the bucket: the uninterrupted run's weights
    resumed = f"{url}-resumed"
    shutil.rmtree(train_into(resumed, tiny_data, "train.max_iter=3"))
    train_into(resumed, tiny_data, resume=True, allow=["train.max_iter"])
    assert_same(weights_from(bucket_objects(resumed)["model.safetensors"]), local_weights)
    # the bucket, not the (removed) staging copy, says a run is there
    shutil.rmtree(staging)
    with pytest.raises(ZooError, match=rf"{url} already holds checkpoints of a run"):
        train_into(url, tiny_data)


@pytest.mark.integration
def test_a_run_directory_in_s3_is_written_whole_and_resumed_from_it(tiny_data, s3, local_weights):
    fs, _ = storage.filesystem("s3://trained")  # moto keeps buckets across this process's servers
    fs.mkdir("trained")
    check_bucket_run("s3://trained/mean-pool", tiny_data, local_weights)
    with pytest.raises(DataError, match="no such bucket 'nowhere'"):
        train_into("s3://nowhere/run", tiny_data)


@pytest.mark.integration
def test_a_run_directory_in_gcs_is_written_whole_and_resumed_from_it(tiny_data, monkeypatch, local_weights):
    with gcs_server(monkeypatch):
        fs, _ = storage.filesystem("gs://runs-gcs")
        fs.mkdir("runs-gcs")
        check_bucket_run("gs://runs-gcs/mean-pool", tiny_data, local_weights)


def zoo_cli(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    import os

    return subprocess.run(
        [ZOO, *args], capture_output=True, text=True, timeout=900, cwd=cwd, env={**os.environ, **(env or {})}
    )


def files_with(secret: bytes, root: Path) -> list[str]:
    return [str(p) for p in root.rglob("*") if p.is_file() and secret in p.read_bytes()]


@pytest.mark.integration
@pytest.mark.timeout(900)
def test_no_file_a_run_writes_holds_a_credential_of_a_data_url(tiny_data, s3, tmp_path):
    """Data from a server that wants a password in the URL: one process training into a bucket and two
    processes training into a local folder; no file, object, log or message has the password. Evaluating
    the run later without the data names what to pass."""
    secret = "hunter2-never-written"
    tmp = tmp_path / "tmp"  # where the launcher's private config goes: empty once the job is over
    tmp.mkdir()
    env = {"TMPDIR": str(tmp), "ZOO_CACHE_DIR": str(tmp_path / "cache")}
    fs, _ = storage.filesystem("s3://no-secrets")
    fs.mkdir("no-secrets")
    with http_server(tiny_data) as server:
        base = server.url.replace("http://", f"http://ann:{secret}@")
        common = [
            "-o", "dataset.preset=yt8m", "-o", "dataset.num_classes=12",
            "-o", f"data.train=[{base}/train/]", "-o", f"data.valid=[{base}/validate/]",
            "-o", "train.batch_size=8", "-o", "train.epoch=1", "-o", "train.max_iter=4",
            "-o", "train.checkpoint_steps=2", "-o", "eval.batch_size=32",
        ]  # fmt: skip
        single = zoo_cli(
            "train", "mean-pool", "--save_dir", "s3://no-secrets/single", *common, cwd=tmp_path, env=env
        )
        assert single.returncode == 0, single.stderr[-3000:]
        assert "s3://no-secrets/single" in single.stdout
        multi = zoo_cli(
            "train", "mean-pool", "--cpu-procs", "2", "--save_dir", "s3://no-secrets/multi", *common,
            cwd=tmp_path, env=env,
        )  # fmt: skip
        assert multi.returncode == 0, multi.stderr[-3000:]
        assert server.gets > 0
        # the two-process run resumed from the bucket alone (its staging copy went when it ended well)
        resumed = zoo_cli(
            "train", "mean-pool", "--cpu-procs", "2", "--save_dir", "s3://no-secrets/multi", *common,
            "-o", "train.max_iter=6", "--resume", "--allow-change", "train.max_iter", cwd=tmp_path, env=env,
        )  # fmt: skip
        assert resumed.returncode == 0, resumed.stderr[-3000:]
        assert "resumed from" in resumed.stdout + resumed.stderr
        # evaluating the run: its config.json kept the URLs without the password
        refused = zoo_cli(
            "eval", "--weights", "s3://no-secrets/single", "--output", "ev", cwd=tmp_path, env=env
        )
        assert refused.returncode == 2, refused.stderr[-3000:]
        assert "data.valid is http://***@127.0.0.1" in refused.stderr
        assert "-o 'data.valid=[URL]'" in refused.stderr and "Traceback" not in refused.stderr
        given = zoo_cli(
            "eval", "--weights", "s3://no-secrets/single", "--output", "ev", "-o", f"data.test=[{base}/test/]",
            cwd=tmp_path, env=env,
        )  # fmt: skip
        assert given.returncode == 0, given.stderr[-3000:]
    objects = bucket_objects("s3://no-secrets/single")
    assert "model.safetensors" in objects and "latest" in objects
    assert [name for name, blob in objects.items() if secret.encode() in blob] == []
    objects = bucket_objects("s3://no-secrets/multi")
    assert "model.safetensors" in objects and objects["latest"] == b"step-00000006\n"
    assert b"step-00000004" in objects["resumes.jsonl"]
    assert "logs/config.json" in objects and "logs/workerlog.1" in objects  # the launcher's copy; every rank
    assert [name for name, blob in objects.items() if secret.encode() in blob] == []
    assert files_with(secret.encode(), tmp_path) == []  # eval outputs, cache, staging copies, temp files
    assert list(tmp.iterdir()) == []
    for result in (single, multi, resumed, refused, given):
        assert secret not in result.stdout + result.stderr


@pytest.mark.integration
def test_zoo_run_writes_its_run_evaluation_and_predictions_into_a_bucket(tiny_data, s3, tmp_path):
    fs, _ = storage.filesystem("s3://quick")
    fs.mkdir("quick")
    done = zoo_cli(
        "run", "mean-pool", "--data", str(tiny_data), "--output", "s3://quick/mean-pool",
        "-o", "dataset.preset=yt8m", "-o", "dataset.num_classes=12", "-o", "train.batch_size=8",
        "-o", "train.epoch=1", "-o", "train.max_iter=2", "-o", "eval.batch_size=32",
        cwd=tmp_path, env={"ZOO_CACHE_DIR": str(tmp_path / "cache")},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    objects = bucket_objects("s3://quick/mean-pool")
    for name in ("config.json", "latest", "model.safetensors", "eval_results.json", "predictions.jsonl"):
        assert name in objects, sorted(objects)
    assert "s3://quick/mean-pool" in done.stdout
    assert not list((tmp_path / "cache").glob("runs/*/*"))  # the staging copy is gone


def test_a_checkpoint_goes_up_before_the_pointer_that_names_it_and_a_pruned_one_goes_after(
    tmp_path, monkeypatch
):
    """The order of a mirror's uploads and deletions (fsspec's in-memory store, every call recorded), and a
    background upload sends the run as it was when it started, whatever is written meanwhile."""
    import threading

    from zoo.engine.runs.bucket import RunMirror

    run = tmp_path / "run"
    run.mkdir()
    mirror = RunMirror("memory://order/run", run)
    calls: list[tuple[str, str]] = []
    release = threading.Event()
    put_file, rm_file = mirror.fs.put_file, mirror.fs.rm_file

    def put(local: str, remote: str) -> None:
        if remote.endswith("/latest"):
            release.wait(10)  # held until the test has written the next checkpoint
        calls.append(("put", remote.split("/run/", 1)[1]))
        put_file(local, remote)

    def rm(remote: str) -> None:
        calls.append(("rm", remote.split("/run/", 1)[1]))
        rm_file(remote)

    monkeypatch.setattr(mirror.fs, "put_file", put)
    monkeypatch.setattr(mirror.fs, "rm_file", rm)

    def checkpoint(step: int) -> None:
        folder = run / "checkpoints" / f"step-{step:08d}"
        folder.mkdir(parents=True)
        for name in ("model.safetensors", "state.json"):
            (folder / name).write_text(f"{name} {step}")
        (run / "latest.tmp").write_text(f"step-{step:08d}\n")
        (run / "latest.tmp").replace(run / "latest")  # replaced, as zoo.atomic does

    (run / "run.lock").write_text("")
    (run / "config.json").write_text("{}")
    checkpoint(2)
    release.set()
    mirror.push()
    assert calls == [
        ("put", "checkpoints/step-00000002/model.safetensors"),
        ("put", "checkpoints/step-00000002/state.json"),
        ("put", "config.json"),
        ("put", "latest"),
    ]  # run.lock stays on this machine
    calls.clear()
    release.clear()
    checkpoint(4)
    import shutil

    shutil.rmtree(run / "checkpoints" / "step-00000002")  # pruned
    mirror.push_in_background()
    checkpoint(6)  # written while the upload of step 4 waits
    release.set()
    mirror.wait()
    assert calls == [
        ("put", "checkpoints/step-00000004/model.safetensors"),
        ("put", "checkpoints/step-00000004/state.json"),
        ("put", "latest"),
        ("rm", "checkpoints/step-00000002/model.safetensors"),
        ("rm", "checkpoints/step-00000002/state.json"),
    ]
    assert mirror.fs.cat_file("/order/run/latest") == b"step-00000004\n"  # the snapshot's, not step 6's
    mirror.push()
    assert mirror.fs.cat_file("/order/run/latest") == b"step-00000006\n"
    assert not [p for p in run.iterdir() if p.name.startswith(".upload-")]  # snapshots removed


def test_a_redirected_range_is_read_through_aiohttp(tmp_path):
    """Plain ranges are read with http.client; an answer it does not take (a redirect) goes to aiohttp,
    which follows it: the bytes are the same."""
    import threading

    from remote_servers import FileServer, _Handler

    payload = np.random.default_rng(2).integers(0, 255, 30_000, dtype=np.uint8).tobytes()
    (tmp_path / "blob.bin").write_bytes(payload)

    class Moving(_Handler):
        def do_GET(self) -> None:  # noqa: N802
            if self.path == "/moved.bin":
                self.send_response(302)
                self.send_header("Location", "/blob.bin")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            super().do_GET()

        def do_HEAD(self) -> None:  # noqa: N802
            if self.path == "/moved.bin":
                self.path = "/blob.bin"
            super().do_HEAD()

    server = FileServer(tmp_path)
    server.RequestHandlerClass = Moving
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        options = storage.ReadOptions(block_size=10_000, blocks=1, retry=storage.Retry(backoff=0.01))
        with storage.RemoteFile(f"{server.url}/moved.bin", options) as f:
            assert f.read() == payload
        with storage.RemoteFile(f"{server.url}/blob.bin", options) as f:
            assert f.read(12_345) == payload[:12_345] and f.read() == payload[12_345:]
    finally:
        server.shutdown()
        server.server_close()
    assert {rng for path, rng in server.log} == {"bytes=0-9999", "bytes=10000-19999", "bytes=20000-29999"}
    assert all(path == "/blob.bin" for path, _ in server.log)  # the redirect's target, whole ranges


def test_a_kept_connection_the_server_closed_is_replaced_without_a_retry(tmp_path, capfd):
    """A server that closes each connection after its answer (as an idle timeout would, without saying so):
    the next range goes on a new connection at once, with no retry, no warning and no wait."""
    import threading

    from remote_servers import FileServer, _Handler

    payload = np.random.default_rng(3).integers(0, 255, 50_000, dtype=np.uint8).tobytes()
    (tmp_path / "blob.bin").write_bytes(payload)

    class Closing(_Handler):
        def _serve(self, body: bool) -> None:
            super()._serve(body)
            self.close_connection = True  # closed silently: no "Connection: close" header was sent

    server = FileServer(tmp_path)
    server.RequestHandlerClass = Closing
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        options = storage.ReadOptions(block_size=5_000, blocks=0)  # retries would wait 0.5 s and warn
        for _ in range(2):
            with storage.RemoteFile(f"{server.url}/blob.bin", options) as f:
                assert f.read() == payload
    finally:
        server.shutdown()
        server.server_close()
    assert "retry" not in capfd.readouterr().err
    assert len(server.log) == 20


# -- how blocks are received ----------------------------------------------------------------------------------


def put_blob(url: str, size: int, seed: int) -> bytes:
    payload = np.random.default_rng(seed).integers(0, 255, size, dtype=np.uint8).tobytes()
    fs, path = storage.filesystem(url)
    if not fs.exists(path.split("/")[0]):  # moto keeps buckets across this process's servers
        fs.mkdir(path.split("/")[0])
    fs.pipe_file(path, payload)
    return payload


@pytest.mark.integration
def test_s3_ranges_are_read_through_one_presigned_url_per_object_that_no_message_shows(
    s3, monkeypatch, capfd
):
    """S3 ranges go through http.client with a pre-signed GET (signed once per object by s3fs's client);
    the signature and the access key never reach a message, even when the object vanishes mid-read."""
    import remote_servers

    payload = put_blob("s3://signed/blob.bin", 40_000, 4)
    with s3_front(s3) as front:
        monkeypatch.setenv("AWS_ENDPOINT_URL", front.url)
        remote_servers._forget_filesystems()
        options = storage.ReadOptions(
            block_size=10_000, blocks=1, retry=storage.Retry(attempts=2, backoff=0.01)
        )
        with storage.RemoteFile("s3://signed/blob.bin", options) as f:
            assert f.read() == payload
        gets = [(signed, rng) for method, _path, signed, rng in front.log if method == "GET"]
        assert sorted(gets) == [(True, f"bytes={i}-{i + 9_999}") for i in range(0, 40_000, 10_000)]
        with storage.RemoteFile("s3://signed/blob.bin", options) as f:
            assert f.read(100) == payload[:100]
            storage.filesystem("s3://signed")[0].rm("signed/blob.bin")
            with pytest.raises(DataError) as failed:
                f.read()
    message = str(failed.value) + capfd.readouterr().err
    assert "s3://signed/blob.bin" in message
    assert ACCESS_KEY not in message and SECRET_KEY not in message
    assert not re.search(r"(?i)signature=(?!\*\*\*)", message), message


@pytest.mark.integration
@pytest.mark.parametrize("refusals", [1, 2])
def test_a_refused_presigned_range_is_read_by_botocore_and_the_object_signed_anew(
    s3, monkeypatch, capfd, refusals
):
    """A pre-signed GET answered 403 (as an expired signature is): that range is asked again at once through
    s3fs's own client (no retry, no wait), and the next range uses a new signature; when that one is refused
    too, the rest of the object is read by s3fs's client."""
    import remote_servers

    payload = put_blob("s3://refused/blob.bin", 40_000, 5)
    with s3_front(s3) as front:
        monkeypatch.setenv("AWS_ENDPOINT_URL", front.url)
        remote_servers._forget_filesystems()
        front.refuse_signed = refusals
        options = storage.ReadOptions(block_size=10_000, blocks=0)
        with storage.RemoteFile("s3://refused/blob.bin", options) as f:
            assert f.read() == payload
        gets = [(signed, rng) for method, _path, signed, rng in front.log if method == "GET"]
    ranges = [f"bytes={i}-{i + 9_999}" for i in range(0, 40_000, 10_000)]
    if refusals == 1:  # refused; botocore (its signature in a header); signed anew
        assert gets == [(True, ranges[0]), (False, ranges[0])] + [(True, r) for r in ranges[1:]]
    else:
        assert gets == [(True, ranges[0]), (False, ranges[0]), (True, ranges[1]), (False, ranges[1])] + [
            (False, r) for r in ranges[2:]
        ]
    assert "retry" not in capfd.readouterr().err


def test_the_reader_takes_a_blocks_first_bytes_before_the_rest_has_arrived(tmp_path):
    """A server that sends the first half of a range and then holds the rest back until told: the reader
    gets bytes from that first half meanwhile (it does not wait for the whole block)."""
    import threading

    payload = np.random.default_rng(6).integers(0, 255, 200_000, dtype=np.uint8).tobytes()
    (tmp_path / "blob.bin").write_bytes(payload)
    go_on = threading.Event()
    held_too_long = threading.Event()

    class Holding(_Handler):
        def do_GET(self) -> None:  # noqa: N802
            first, last = (int(x) for x in self.headers["Range"][6:].split("-"))
            part = payload[first : last + 1]
            self.send_response(206)
            self.send_header("Content-Length", str(len(part)))
            self.send_header("Content-Range", f"bytes {first}-{last}/{len(payload)}")
            self.end_headers()
            self.wfile.write(part[: len(part) // 2])
            self.wfile.flush()
            if not go_on.wait(30):
                held_too_long.set()
            self.wfile.write(part[len(part) // 2 :])

    server = FileServer(tmp_path)
    server.RequestHandlerClass = Holding
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        options = storage.ReadOptions(block_size=200_000, blocks=0)
        with storage.RemoteFile(f"{server.url}/blob.bin", options) as f:
            assert f.read(50_000) == payload[:50_000]
            assert not go_on.is_set() and not held_too_long.is_set()
            go_on.set()
            assert f.read() == payload[50_000:]
    finally:
        go_on.set()
        server.shutdown()
        server.server_close()


@pytest.mark.integration
def test_a_block_passed_at_its_edge_is_not_read_after_its_buffer_went_to_another_file(tmp_path):
    """A read that ends exactly at a block's edge passes the block (its buffer becomes a spare); another file
    of the process takes the buffer and fills it; a seek back into the passed block reads the object again,
    not the other file's bytes (it did, before the reader forgot a block it had given back)."""
    rng = np.random.default_rng(9)
    payload, other = (rng.integers(0, 255, 300_000, dtype=np.uint8).tobytes() for _ in range(2))
    (tmp_path / "blob.bin").write_bytes(payload)
    (tmp_path / "other.bin").write_bytes(other)
    with http_server(tmp_path) as server:
        options = storage.ReadOptions(block_size=8192, blocks=1)
        with (
            storage.RemoteFile(f"{server.url}/blob.bin", options) as a,
            storage.RemoteFile(f"{server.url}/other.bin", options) as b,
        ):
            assert a.read(8192) == payload[:8192]
            assert b.read() == other
            a.seek(100)
            assert a.read(50) == payload[100:150]


@pytest.mark.integration
def test_reused_block_buffers_never_mix_bytes_of_two_blocks(tmp_path):
    """Reads of every size at every offset, forwards, backwards and across block edges, while block buffers
    are handed from the blocks passed to the next ones: every byte is the object's."""
    payload = np.random.default_rng(7).integers(0, 255, 300_000, dtype=np.uint8).tobytes()
    (tmp_path / "blob.bin").write_bytes(payload)
    rng = np.random.default_rng(8)
    with http_server(tmp_path) as server:
        options = storage.ReadOptions(block_size=8192, blocks=3)
        with storage.RemoteFile(f"{server.url}/blob.bin", options) as f:
            for _ in range(400):
                at = int(rng.integers(0, len(payload)))
                n = int(rng.choice([1, 12, 4096, 8192, 20_000, 70_000]))
                f.seek(at)
                assert f.read(n) == payload[at : at + n], (at, n)
            f.seek(0)
            assert b"".join(iter(lambda: f.read(5000), b"")) == payload

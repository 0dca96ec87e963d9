"""Reading data from an object store: the sample data from S3 servers on 127.0.0.1 against local disk.

    python benchmarks/bench_remote.py [--workers 1,2] [--blocks 8MiB:4,1MiB:4,8MiB:1] [--repeat 2] [--passes 3]
                                      [--memory-sizes 16,128] [--before DIR] [--json out.json]

Needs the s3 extra and moto's server (``pip install -e '.[dev]'``). The built-in sample data's training
split (``zoo run`` makes it; made here once if missing) is uploaded to a moto S3 server started as a separate
process on a free loopback port. Then, in this one run, each configuration reads the whole split through the
``yt8m-frame`` reader (records framed, CRC-checked and decoded to uint8 frames, as training reads them), in
``workers`` processes that each read their share of the files, as the pipeline's DataLoader workers do (with
the pipeline's hint that starts the next file while one is read):

- ``local``: the files on local disk (the reference);
- ``s3 BLOCK:N``: the same files as ``s3://`` URLs from moto, read ahead ``N`` blocks of ``BLOCK`` bytes;
- ``s3 raw ranged`` / ``cat_ranges`` / ``whole`` / ``botocore``: only moto's side, nothing decoded:
  every file fetched in 8 MiB ranges one after the other (``cat_file``), all its 8 MiB ranges at once (s3fs's
  ``cat_ranges``), in one GET of the whole object, or in one GET through botocore's synchronous client; the
  best of them is moto's ceiling (moto is a pure-Python mock: it cannot serve the split at 0.8x of local disk
  even to a client that decodes nothing), and each ``s3`` row is also given as a ratio to it;
- ``s3front BLOCK:N``: the same ``s3://`` URLs through a loopback S3 *front* (this file's own server, not a
  real store): GET and HEAD of the objects under ``bench/train/`` are answered from the local files with
  ``sendfile`` (byte ranges; signatures are not checked), every other request (listings, ...) is forwarded to
  moto. No S3 server fast enough to show the client's speed installs here (rclone's ``serve s3`` is newer
  than Debian's rclone 1.60; npm's ``s3rver`` measured slower than moto): the front shows what our S3 client
  path costs when the server is not the bottleneck; ``s3front raw stdlib`` is its ceiling (each object in one
  GET by ``http.client`` into a reused buffer, nothing decoded);
- ``http BLOCK:N``: the same files from a loopback HTTP server that answers ranges with ``sendfile``, through
  the same reader: what the storage layer itself costs;
- ``http raw stdlib``: the same server's ceiling for a Python client: each file in one GET read by
  ``http.client`` with ``readinto`` into one reused buffer, nothing decoded (each ``http`` row is also given
  as a ratio to it);
- with ``--before DIR`` (another checkout, e.g. ``git archive main | tar -x -C DIR``): ``s3``, ``s3front``
  and ``http`` with the first read-ahead setting, read by that checkout's code (rows marked ``before``), so
  that a change is measured against its baseline in the same run.

Each worker reads its share ``--passes`` times per row (the split is small: one pass on local disk takes
tens of milliseconds).

Videos per second are measured over the wall time of the slowest worker, best of ``--repeat``; the ratio to
``local`` with the same number of workers is the number that counts (goal: >= 0.8 on loopback). On a shared
machine the best of a few rounds is luck as much as speed: each row also gives the median over the rounds of
its ratio to the same round's ``local`` row (the rows of a round run one after the other). Each row also
says which share of the readers' time went to waiting for bytes not yet arrived (the store's side) and how
much CPU time the reading processes and the server process used (beside the wall time: whether CPU or
waiting bounds a row). Peak memory:
one process reads one file of each ``--memory-sizes`` MiB (random records) from S3 while a thread samples its
resident set every 5 ms; the peak above the RSS before reading should not grow with the file's size.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from queue import Empty

ENV = {
    "AWS_ACCESS_KEY_ID": "bench",
    "AWS_SECRET_ACCESS_KEY": "bench-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_moto() -> tuple[subprocess.Popen, str]:
    port = free_port()
    server = Path(sys.executable).with_name("moto_server")
    proc = subprocess.Popen(
        [str(server), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_for(proc, port, "moto_server")
    return proc, f"http://127.0.0.1:{port}"


def wait_for(proc: subprocess.Popen, port: int, what: str) -> None:
    """Until the server ``proc`` accepts connections on ``port`` (a minute at most)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit(f"{what} did not start")


def serve_files(root: str, port: int, prefix: str = "/", upstream: str | None = None) -> None:
    """A loopback HTTP server that answers GET and HEAD of ``prefix`` + NAME from ``root``/NAME, byte ranges
    by ``os.sendfile`` (one thread per connection); the query (a pre-signed URL's) and any credentials are
    ignored. With ``upstream`` (moto's endpoint) it is an S3 front: every other request (listings, anything
    not under ``prefix``) is forwarded there and its answer relayed."""
    import email.utils
    import http.client
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from urllib.parse import urlsplit

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def do_HEAD(self) -> None:  # noqa: N802
            self.serve(False)

        def do_GET(self) -> None:  # noqa: N802
            self.serve(True)

        def do_PUT(self) -> None:  # noqa: N802
            self.forward()

        do_POST = do_DELETE = do_PUT  # noqa: N815

        def serve(self, body: bool) -> None:
            target = urlsplit(self.path).path
            path = os.path.join(root, target[len(prefix) :]) if target.startswith(prefix) else ""
            if not os.path.isfile(path):
                if upstream is not None:
                    self.forward()
                else:
                    self.send_error(404)
                return
            info = os.stat(path)
            size = info.st_size
            start, end = 0, size
            ranged = self.headers.get("Range", "")
            if ranged.startswith("bytes="):
                first, _, last = ranged[6:].partition("-")
                start, end = int(first), min(size, int(last) + 1) if last else size
            self.send_response(206 if ranged else 200)
            self.send_header("Content-Length", str(end - start))
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("ETag", f'"{info.st_size:x}-{info.st_mtime_ns:x}"')
            self.send_header("Last-Modified", email.utils.formatdate(info.st_mtime, usegmt=True))
            if ranged:
                self.send_header("Content-Range", f"bytes {start}-{end - 1}/{size}")
            self.end_headers()
            if body:
                self.wfile.flush()
                with open(path, "rb") as f:
                    offset = start
                    while offset < end:
                        offset += os.sendfile(self.connection.fileno(), f.fileno(), offset, end - offset)

        def forward(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            payload = self.rfile.read(length) if length else None
            connection = http.client.HTTPConnection(urlsplit(upstream).netloc, timeout=60)
            connection.request(self.command, self.path, payload, dict(self.headers.items()))
            answer = connection.getresponse()
            data = answer.read()
            self.send_response(answer.status)
            for name, value in answer.getheaders():
                if name.lower() not in (
                    "transfer-encoding",
                    "connection",
                    "content-length",
                    "server",
                    "date",
                ):
                    self.send_header(name, value)
            # a HEAD's answer says the length of the body a GET would have
            length = answer.getheader("Content-Length", "0") if self.command == "HEAD" else str(len(data))
            self.send_header("Content-Length", length)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)
            connection.close()

    ThreadingHTTPServer.daemon_threads = True
    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


def start_server(*args: str) -> tuple[subprocess.Popen, int]:
    """This file's ``--serve`` server on a free port, once it accepts connections."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, __file__, "--serve", str(port), *args])
    wait_for(proc, port, "the loopback server")
    return proc, port


SETTINGS = ("raw", "mode", "passes", "env", "code")  # a row's options that are not the reader's


def read_share(paths: list[str], options: dict, worker: int, workers: int, queue) -> None:
    os.environ.update(options.get("env", {}))  # the store's endpoint for this row
    if options.get("code"):  # the "before" rows: zoo and its plugins from another checkout
        sys.path[:0] = [options["code"], os.path.join(options["code"], "plugins")]
    import zoo
    from zoo import storage

    reader = zoo.build_reader(
        "yt8m-frame", paths=paths, **{k: v for k, v in options.items() if k not in SETTINGS}
    )
    if storage.is_url(paths[0]):  # the store's client imported and connected before the clock starts,
        storage.stat(paths[0])  # as in any run after its first file (importing botocore alone is ~0.5 s)
    mine = reader.sources()[worker::workers]
    raw = RawClient(options["mode"], mine) if options.get("raw") else None
    start = time.perf_counter()
    cpu = time.process_time()
    videos = 0
    for _ in range(options.get("passes", 1)):  # the share read several times: a measurement, not noise
        for i, source in enumerate(mine):
            if i + 1 < len(mine) and not raw:
                reader.prefetch(mine[i + 1])  # as the pipeline does: the next file in flight (remote only)
            if raw:  # the server's ceiling: the bytes only, nothing decoded
                raw.fetch(source)
                videos += options["raw"][source]
                continue
            for _record in reader.read_part(source, 0, 1):
                videos += 1
    from zoo.storage import READ_STATS

    seconds = time.perf_counter() - start
    queue.put((videos, seconds, READ_STATS.wait_s, READ_STATS.requests, time.process_time() - cpu))


class RawClient:
    """Fetches whole files and decodes nothing: what a server and a client cost without our layer.

    ``ranged`` / ``cat_ranges`` / ``whole``: fsspec (s3fs or aiohttp), 8 MiB ranges one after the other, all
    of a file's 8 MiB ranges at once, or one GET; ``botocore``: botocore's own synchronous client (urllib3),
    one GET of the whole object; ``stdlib``: Python's ``http.client`` reading each object with ``readinto``
    into one reused buffer (the fewest copies a Python client can make)."""

    def __init__(self, mode: str, sources: list[str]) -> None:
        from zoo.storage import filesystem, stat

        self.mode = mode
        self.sizes = {source: stat(source).size for source in sources}
        self.fs, _ = filesystem(sources[0])
        if mode == "botocore":
            import botocore.session

            self.client = botocore.session.get_session().create_client(
                "s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"]
            )
        if mode == "stdlib":  # an http(s) URL, or an S3 object from the front (which asks for no signature)
            import http.client
            import urllib.parse

            self.endpoint = os.environ["AWS_ENDPOINT_URL"] if sources[0].startswith("s3://") else None
            netloc = urllib.parse.urlsplit(self.endpoint or sources[0]).netloc
            self.connection = http.client.HTTPConnection(netloc)
            self.buffer = memoryview(bytearray(max(self.sizes.values())))

    def fetch(self, source: str) -> None:
        import urllib.parse

        from zoo.storage import filesystem

        size = self.sizes[source]
        key = filesystem(source)[1]
        ranges = [(o, min(size, o + (8 << 20))) for o in range(0, size, 8 << 20)]
        if self.mode == "whole":  # one GET of the whole object (memory: the whole file)
            self.fs.cat_file(key)
        elif self.mode == "cat_ranges":  # every 8 MiB range of the file at once (asyncio)
            self.fs.cat_ranges([key] * len(ranges), [a for a, _ in ranges], [b for _, b in ranges])
        elif self.mode == "botocore":
            bucket, _, name = key.partition("/")
            self.client.get_object(Bucket=bucket, Key=name)["Body"].read()
        elif self.mode == "stdlib":
            path = f"/{key}" if self.endpoint else urllib.parse.urlsplit(source).path
            self.connection.request("GET", path)
            response = self.connection.getresponse()
            got = 0
            while n := response.readinto(self.buffer[got:size]):
                got += n
            response.close()
        else:  # one 8 MiB range after the other
            for a, b in ranges:
                self.fs.cat_file(key, start=a, end=b)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` so far (its threads included)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(paths: list[str], options: dict, workers: int, server: int | None = None) -> dict:
    """One configuration: videos/s over the slowest worker; the share of the readers' time spent waiting
    for blocks; the CPU time the server process (pid ``server``) used meanwhile."""
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=read_share, args=(paths, options, w, workers, queue)) for w in range(workers)]
    server_cpu = cpu_seconds(server) if server else 0.0
    wall = time.perf_counter()
    for p in procs:
        p.start()
    results: list = []
    while len(results) < len(procs):
        try:
            results.append(queue.get(timeout=5))
        except Empty:
            failed = [p.exitcode for p in procs if p.exitcode not in (None, 0)]
            if failed:
                raise SystemExit(
                    f"a reading process failed (exit code {failed[0]}); see its traceback above"
                ) from None
    for p in procs:
        p.join()
    wall = time.perf_counter() - wall
    server_cpu = cpu_seconds(server) - server_cpu if server else None
    videos = sum(r[0] for r in results)
    slowest = max(r[1] for r in results)
    return {
        "videos": videos,
        "seconds": slowest,
        "videos_per_s": videos / slowest,
        "wall_s": wall,
        "wait_share": sum(r[2] for r in results) / sum(r[1] for r in results),
        "requests": sum(r[3] for r in results),
        "server_cpu_s": server_cpu,
        "client_cpu_s": sum(r[4] for r in results),
    }


def memory_child(url: str, block: str, blocks: int) -> None:
    """Peak RSS growth while reading ``url`` record by record (run in its own process)."""
    import threading

    from zoo_yt8m_data.tfrecord import read_records

    from zoo.storage import ReadOptions, parse_size, stat

    def rss() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    stat(url)  # the store's client is loaded and connected before the baseline
    base = rss()
    peak = [base]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.005):
            peak[0] = max(peak[0], rss())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    options = ReadOptions(block_size=parse_size(block), blocks=blocks)
    records = sum(1 for _ in read_records(url, remote=options))
    done.set()
    sampler.join()
    print(json.dumps({"records": records, "peak_growth_mib": (max(peak[0], rss()) - base) / 2**20}))


def big_file(path: Path, mib: int) -> None:
    import numpy as np
    from zoo_yt8m_data.tfrecord import frame

    rng = np.random.default_rng(mib)
    with open(path, "wb") as f:
        written = 0
        while written < mib << 20:
            record = frame(rng.integers(0, 255, 256 << 10, dtype=np.uint8).tobytes())
            f.write(record)
            written += len(record)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", default="1,2", help="worker counts (default 1,2)")
    parser.add_argument("--blocks", default="8MiB:4,1MiB:4,8MiB:1", help="read-ahead settings BLOCK:N")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--passes", type=int, default=3, help="times each worker reads its share per row")
    parser.add_argument("--memory-sizes", default="16,128", help="file sizes (MiB) for the memory check")
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--memory-child", nargs=3, metavar=("URL", "BLOCK", "N"), help=argparse.SUPPRESS)
    parser.add_argument(
        "--before",
        metavar="DIR",
        help="another checkout (e.g. `git archive main | tar -x -C DIR`): its reader also reads each store with "
        "the first read-ahead setting, in the same run (rows marked 'before')",
    )
    parser.add_argument("--serve", nargs="+", metavar="ARG", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:  # PORT ROOT [PREFIX UPSTREAM]
        serve_files(args.serve[1], int(args.serve[0]), *args.serve[2:])
        return 0
    if args.memory_child:
        memory_child(args.memory_child[0], args.memory_child[1], int(args.memory_child[2]))
        return 0

    from zoo_yt8m_data.synth import ensure_sample_data

    from zoo.paths import cache_dir

    sample = ensure_sample_data(cache_dir("sample-v1"))
    files = sorted(sample["train"])
    total_mib = sum(os.path.getsize(p) for p in files) / 2**20
    print(f"sample training split: {len(files)} files, {total_mib:.0f} MiB ({os.path.dirname(files[0])})")

    proc, endpoint = start_moto()
    os.environ.update(ENV, AWS_ENDPOINT_URL=endpoint)
    http, http_port = start_server(os.path.dirname(files[0]))
    front, front_port = start_server(os.path.dirname(files[0]), "/bench/train/", endpoint)
    pids = {"s3": proc.pid, "s3front": front.pid, "http": http.pid}
    results: dict = {
        "files": len(files),
        "mib": round(total_mib, 1),
        "load_average": {"start": list(os.getloadavg())},
        "rows": [],
        "memory": [],
    }
    try:
        from zoo.storage import filesystem

        fs, _ = filesystem("s3://bench")
        fs.mkdir("bench")
        for path in files:
            fs.put_file(path, f"bench/train/{os.path.basename(path)}")
        remote = [f"s3://bench/train/{os.path.basename(p)}" for p in files]
        served = [f"http://127.0.0.1:{http_port}/{os.path.basename(p)}" for p in files]
        import zoo

        counter = zoo.build_reader("yt8m-frame", paths=files)
        counts = {url: counter.count(path) for url, path in zip(remote, files)}
        served_counts = {url: counts[s3] for url, s3 in zip(served, remote)}
        settings = [(b.split(":")[0], int(b.split(":")[1])) for b in args.blocks.split(",")]
        at_front = {"env": {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{front_port}"}}
        first = {"read_ahead_block": settings[0][0], "read_ahead_blocks": settings[0][1]}
        for workers in [int(w) for w in args.workers.split(",")]:
            configs = (
                [("local", files, {})]
                + [
                    (f"s3 {block}:{n}", remote, {"read_ahead_block": block, "read_ahead_blocks": n})
                    for block, n in settings
                ]
                + [
                    (f"s3 raw {mode}", remote, {"raw": counts, "mode": mode})
                    for mode in ("ranged", "cat_ranges", "whole", "botocore")
                ]
                + [
                    (
                        f"s3front {block}:{n}",
                        remote,
                        {**at_front, "read_ahead_block": block, "read_ahead_blocks": n},
                    )
                    for block, n in settings
                ]
                + [("s3front raw stdlib", remote, {**at_front, "raw": counts, "mode": "stdlib"})]
                + [
                    (f"http {block}:{n}", served, {"read_ahead_block": block, "read_ahead_blocks": n})
                    for block, n in settings
                ]
                + [("http raw stdlib", served, {"raw": served_counts, "mode": "stdlib"})]
            )
            if args.before:
                setting = ":".join(map(str, settings[0]))
                code = {"code": os.path.abspath(args.before)}
                configs += [
                    (f"s3 {setting} before", remote, {**first, **code}),
                    (f"s3front {setting} before", remote, {**first, **code, **at_front}),
                    (f"http {setting} before", served, {**first, **code}),
                ]
            for _name, _paths, options in configs:
                options["passes"] = args.passes
            best: dict[str, dict] = {}
            in_round: dict[str, list[float]] = {name: [] for name, _paths, _options in configs}
            for _ in range(args.repeat):  # configurations take turns, so load changes hit them alike
                local = None
                for name, paths, options in configs:
                    row = measure(paths, options, workers, pids.get(name.split()[0]))
                    local = local or row["videos_per_s"]  # the round's first row
                    in_round[name].append(row["videos_per_s"] / local)
                    if name not in best or row["videos_per_s"] > best[name]["videos_per_s"]:
                        best[name] = row
            for name, _paths, _options in configs:
                row = best[name]
                ratio = row["videos_per_s"] / best["local"]["videos_per_s"]
                median = statistics.median(in_round[name])
                results["rows"].append(
                    {
                        "workers": workers,
                        "config": name,
                        **row,
                        "ratio_to_local": ratio,
                        "ratio_to_local_median": median,
                    }
                )
                server = f", server {row['server_cpu_s']:.2f} s" if row["server_cpu_s"] is not None else ""
                print(
                    f"workers {workers}  {name:<21} {row['videos_per_s']:9.0f} videos/s  "
                    f"({row['videos']} videos, {row['seconds']:.2f} s)  x{ratio:.2f} local "
                    f"(median of rounds x{median:.2f})  waiting {row['wait_share']:.0%}  "
                    f"{row['requests']} requests  CPU: readers {row['client_cpu_s']:.2f} s{server}"
                )
            for row in results["rows"]:  # the reader against the server's own ceiling, same workers
                if row["workers"] != workers or " raw " in row["config"] or row["config"] == "local":
                    continue
                kind = row["config"].split()[0]
                ceiling = max(
                    (
                        r
                        for r in results["rows"]
                        if r["workers"] == workers and r["config"].startswith(f"{kind} raw")
                    ),
                    key=lambda r: r["videos_per_s"],
                )
                row[f"ratio_to_{kind}_ceiling"] = row["videos_per_s"] / ceiling["videos_per_s"]
                print(
                    f"workers {workers}  {row['config']:<21} x{row[f'ratio_to_{kind}_ceiling']:.2f} "
                    f"{ceiling['config']}"
                )
            print(f"load: {os.getloadavg()}")
        with tempfile.TemporaryDirectory() as tmp:
            for mib in [int(m) for m in args.memory_sizes.split(",")]:
                path = Path(tmp, f"big-{mib}.tfrecord")
                big_file(path, mib)
                fs.put_file(str(path), f"bench/big/{path.name}")
                path.unlink()
                for block, n in settings[:1]:
                    out = subprocess.run(
                        [
                            sys.executable,
                            __file__,
                            "--memory-child",
                            f"s3://bench/big/{path.name}",
                            block,
                            str(n),
                        ],
                        capture_output=True,
                        text=True,
                        check=True,
                        env={**os.environ},
                    )
                    row = {"file_mib": mib, "block": block, "blocks": n, **json.loads(out.stdout)}
                    results["memory"].append(row)
                    print(
                        f"memory: {mib:4d} MiB file, {block}:{n}: peak RSS +{row['peak_growth_mib']:.0f} MiB "
                        f"({row['records']} records)"
                    )
    finally:
        for server in (proc, http, front):
            server.terminate()
            server.wait(timeout=30)
    results["load_average"]["end"] = list(os.getloadavg())
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

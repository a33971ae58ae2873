"""Peak memory of ingesting a large JSON Lines file, from disk and over HTTP.

    python benchmarks/ingest.py [--mb 200]

Writes a JSONL file of about ``--mb`` megabytes (realistic records of about 2 KB) into a
temporary directory, then measures, each in a fresh process (``ru_maxrss`` is a process's
peak): Python with the newsletter imported (``imports``); reading the file into memory once
(``read once``, what holding it costs); ``newsletter ingest FILE`` (``ingest_path``); and
``newsletter ingest URL`` from a loopback server (``ingest_url``, the server in a process of
its own). Each line gives the peak RSS, the peak above ``imports``, and that as a share of the
file's size. Nothing is asserted; run it with ``PYTHONPATH`` at a checkout to measure that
version.
"""

from __future__ import annotations

import argparse
import json
import resource
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WORDS = [
    "spectral",
    "graph",
    "neural",
    "network",
    "diffusion",
    "operator",
    "bound",
    "estimate",
    "regime",
    "equation",
    "stochastic",
    "gradient",
    "sparse",
    "attention",
    "transformer",
    "kernel",
    "manifold",
    "convergence",
]


def write_jsonl(path: Path, megabytes: int) -> int:
    """About ``megabytes`` MB of paper records; the number of records."""
    target = megabytes * 1_000_000
    size = count = 0
    with path.open("w", encoding="utf-8") as out:
        while size < target:
            count += 1
            words = [WORDS[(count * 7 + i * 3) % len(WORDS)] for i in range(260)]
            record = {
                "id": f"bench-{count}",
                "title": f"On {' '.join(words[:8])}, part {count}",
                "abstract": " ".join(words),
                "authors": [f"Author {count % 997}", f"Author {count % 991}"],
                "categories": ["cs.LG", "math.AP"],
                "url": f"https://example.org/papers/{count}",
                "published": "2026-11-20T12:00:00+00:00",
                "upvotes": count % 100,
            }
            line = json.dumps(record) + "\n"
            out.write(line)
            size += len(line)
    return count


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def child(mode: str, target: str, db: str) -> None:
    """One measurement, in this (fresh) process: print the peak RSS in MB."""
    from newsletter.fetch import make_client
    from newsletter.store import open_store
    from newsletter.store.ingest import ingest_path, ingest_url

    if mode == "read-once":
        data = Path(target).read_bytes()
        assert data
    elif mode == "file":
        with open_store(db) as store:
            report = ingest_path(store, Path(target))
            assert report.new and not report.errors, report
    elif mode == "url":
        with open_store(db) as store, make_client("newsletter-benchmark", 60.0) as client:
            report = ingest_url(store, client, target)
            assert report.new and not report.errors, report
    print(f"{peak_mb():.1f}")


def measure(mode: str, target: str, db: Path) -> tuple[float, float]:
    """Peak RSS (MB) and seconds of one measurement in a fresh process."""
    db.unlink(missing_ok=True)
    start = time.perf_counter()
    out = subprocess.run(
        [sys.executable, __file__, "--child", mode, target, str(db)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return float(out.split()[-1]), time.perf_counter() - start


def serve(directory: Path) -> tuple[subprocess.Popen, int]:
    """``python -m http.server`` on a free loopback port, once it answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "-b", "127.0.0.1", "-d", str(directory)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            return server, port
        except OSError:
            time.sleep(0.1)
    server.kill()
    raise RuntimeError("the loopback server did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", type=int, default=200, help="size of the JSONL file (MB)")
    parser.add_argument(
        "--child", nargs=3, metavar=("MODE", "TARGET", "DB"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        path = directory / "papers.jsonl"
        records = write_jsonl(path, args.mb)
        size_mb = path.stat().st_size / 1e6
        print(f"{path.name}: {size_mb:.0f} MB, {records:,} records")
        db = directory / "bench.db"
        base, _ = measure("imports", str(path), db)
        print(f"{'imports':<12} peak {base:7.1f} MB")
        server, port = serve(directory)
        try:
            for mode, target in [
                ("read-once", str(path)),
                ("file", str(path)),
                ("url", f"http://127.0.0.1:{port}/{path.name}"),
            ]:
                peak, seconds = measure(mode, target, db)
                above = peak - base
                print(
                    f"{mode:<12} peak {peak:7.1f} MB, {above:7.1f} MB above imports "
                    f"({above / size_mb:.2f} x the file), {seconds:5.1f} s"
                )
        finally:
            server.kill()
            server.wait()


if __name__ == "__main__":
    main()

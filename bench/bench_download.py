"""Benchmark: ``download_file`` (with and without sha256) versus ``curl -s -o`` on one local URL.

The file (random, 200 MB by default) is served by ``localai.testing.fileserver.FileServer`` in a
separate process, so the server does not share a GIL with the client. Run with
``python bench/bench_download.py --runs 3``; prints a table and writes ``bench-results/download.json``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from localai.gallery.download import download_file

SERVER = ("import sys; from localai.testing.fileserver import FileServer; "
          "s = FileServer(sys.argv[1]); print(s.port, flush=True); sys.stdin.read()")


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--mb", type=int, default=200)
    parser.add_argument("--out", default="bench-results/download.json")
    args = parser.parse_args()
    if not shutil.which("curl"):
        sys.exit("curl is not installed")

    work = Path(tempfile.mkdtemp(prefix="bench-download-"))
    server = None
    try:
        (work / "www").mkdir()
        data = os.urandom(args.mb << 20)
        (work / "www" / "model.bin").write_bytes(data)
        digest, size = hashlib.sha256(data).hexdigest(), len(data)
        del data
        server = subprocess.Popen([sys.executable, "-c", SERVER, str(work / "www")],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        url = f"http://127.0.0.1:{int(server.stdout.readline())}/model.bin"
        dest = work / "out.bin"

        def run(fn) -> float:
            dest.unlink(missing_ok=True)
            seconds = timed(fn)
            assert dest.stat().st_size == size
            return seconds

        cases = {
            "curl -s -o": lambda: subprocess.run(["curl", "-s", "-f", "-o", str(dest), url], check=True),
            "download_file": lambda: download_file(url, dest),
            "download_file+sha256": lambda: download_file(url, dest, sha256=digest),
        }
        run(cases["curl -s -o"])  # warm the page cache
        times = {name: [] for name in cases}
        for _ in range(args.runs):
            for name, fn in cases.items():
                times[name].append(run(fn))
    finally:
        if server is not None:
            server.stdin.close()
            server.wait(10)
        shutil.rmtree(work, ignore_errors=True)

    mb = size / 1e6
    report = {"bytes": size, "runs": args.runs, "median_s": {k: statistics.median(v) for k, v in times.items()},
              "all": times}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2))
    print(f"\n{mb:.1f} MB (random) over loopback HTTP, median of {args.runs}")
    print(f"{'client':<24}{'seconds':>10}{'MB/s':>10}")
    for name, seconds in report["median_s"].items():
        print(f"{name:<24}{seconds:>10.3f}{mb / seconds:>10.1f}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

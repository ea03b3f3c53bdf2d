"""Benchmark: pulling a ~100 MB backend image from a local registry with ``pull_image``
(verified streaming download + safe layer extraction) versus a plain oras-py ``pull``.

Needs ``docker-registry`` (apt). Run with ``python bench/bench_oci.py --runs 3``. Prints a
table and writes ``bench-results/oci.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import oras.provider

from localai.gallery import oci
from localai.testing.registry import Registry


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--mb", type=int, default=100)
    parser.add_argument("--out", default="bench-results/oci.json")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-oci-"))
    try:
        with Registry(work / "registry") as registry:
            src = work / "src"
            src.mkdir()
            (src / "run.sh").write_text("#!/bin/sh\nexec ./backend \"$@\"\n")
            (src / "model.bin").write_bytes(os.urandom(args.mb << 20))
            ref = f"{registry.host}/bench/backend:v1"
            push_s = timed(lambda: oci.push_image(src, ref))
            size = oci.build_image(src)[0]["layers"][0]["size"]

            def pull_ours(i: int) -> None:
                dest = work / f"ours-{i}"
                dest.mkdir()
                oci.pull_image(ref, dest)
                assert (dest / "model.bin").stat().st_size == args.mb << 20

            def pull_oras(i: int) -> None:
                dest = work / f"oras-{i}"
                oras.provider.Registry(hostname=registry.host, insecure=True).pull(target=ref, outdir=str(dest))
                assert (dest / "model.bin").stat().st_size == args.mb << 20

            ours = [timed(lambda i=i: pull_ours(i)) for i in range(args.runs)]
            plain = [timed(lambda i=i: pull_oras(i)) for i in range(args.runs)]
    finally:
        shutil.rmtree(work, ignore_errors=True)

    mb = size / 1e6
    report = {"layer_bytes": size, "runs": args.runs, "push_s": push_s,
              "pull_image_s": statistics.median(ours), "oras_pull_s": statistics.median(plain),
              "all": {"pull_image": ours, "oras_pull": plain}}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2))
    print(f"\n{mb:.1f} MB layer (incompressible), local docker-registry, median of {args.runs}; "
          f"build+push {push_s:.2f} s")
    print(f"{'path':<22}{'seconds':>10}{'MB/s':>10}")
    for name, key in (("oci.pull_image", "pull_image_s"), ("oras Registry.pull", "oras_pull_s")):
        print(f"{name:<22}{report[key]:>10.2f}{mb / report[key]:>10.1f}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

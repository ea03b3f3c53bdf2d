"""bench_concurrency's report: the targets, the Markdown tables, the plot, the machine line."""

from __future__ import annotations

import os
import sys
from pathlib import Path

LEVELS = (1, 2, 4, 8)


def targets(report: dict) -> list[tuple[str, str, bool]]:
    c = report["concurrency"]
    ours, lcp, native = (c[k][4]["aggregate_tps"] for k in ("local-ai run", "llama_cpp.server", "llama.cpp server"))
    single, inproc = report["single_stream"]["local-ai run"], report["single_stream"]["in-process llama-cpp-python"]
    o = report["kernel_overhead"]
    p, sat = o["paced"], o["saturated"]  # kernel CPU from the saturated run: no idle time in it
    load = report["under_load"]
    return [
        ("4 streams vs llama_cpp.server", f"{ours / lcp:.2f}x (target >= 2x)", ours >= 2 * lcp),
        ("4 streams vs llama.cpp's server", f"{ours / native:.2f}x (target >= 0.9x)", ours >= 0.9 * native),
        ("single-stream decode vs in-process", f"{single['decode_tps'] / inproc['decode_tps']:.3f}x (target >= 0.95x)",
         single["decode_tps"] >= 0.95 * inproc["decode_tps"]),
        ("first-token overhead", f"{single['ttft_ms'] - inproc['ttft_ms']:.1f} ms (target <= 15 ms)",
         single["ttft_ms"] - inproc["ttft_ms"] <= 15),
        ("kernel per streamed chunk, p50, 16 clients paced (16 streams/s)",
         f"{p['added_per_chunk_ms']:.3f} ms (target <= 0.1); kernel CPU {sat['kernel_cpu_per_chunk_ms']:.3f} ms",
         p["added_per_chunk_ms"] <= 0.1),
        ("kernel per request, p50, 16 clients paced (160 requests/s)",
         f"{p['added_per_request_ms']:.2f} ms (target <= 2); kernel CPU {sat['kernel_cpu_per_request_ms']:.2f} ms",
         p["added_per_request_ms"] <= 2),
        ("the same, 16 clients back to back (saturated)",
         f"{o['saturated']['added_per_chunk_ms']:.3f} ms/chunk, {o['saturated']['added_per_request_ms']:.2f} "
         f"ms/request: queueing behind 15 others on one event loop",
         o["saturated"]["added_per_chunk_ms"] <= 0.1 and o["saturated"]["added_per_request_ms"] <= 2),
        ("first token while 3 stream", f"{load['ratio']:.2f}x idle (target < 3x)", load["ratio"] < 3),
    ]


def markdown(report: dict) -> str:
    c = report["concurrency"]
    lines = [f"Machine: {report['machine']}. SmolLM2-135M Q4_1, {report['settings']['threads']} threads, "
             f"{report['settings']['max_tokens']} tokens per stream, temperature 0, median of "
             f"{report['settings']['runs']} runs.", "",
             "| aggregate tokens/s | " + " | ".join(f"{n} stream{'s' if n > 1 else ''}" for n in LEVELS) + " |",
             "| --- |" + " ---: |" * len(LEVELS)]
    for name, rows in c.items():
        lines.append(f"| {name} | " + " | ".join(f"{rows[n]['aggregate_tps']:.0f}" for n in LEVELS) + " |")
    lines += ["", "| single stream | TTFT ms | decode tok/s |", "| --- | ---: | ---: |"]
    for name, row in report["single_stream"].items():
        lines.append(f"| {name} | {row['ttft_ms']:.1f} | {row['decode_tps']:.1f} |")
    lines += ["", "| target | measured | met |", "| --- | --- | --- |"]
    lines += [f"| {name} | {value} | {'yes' if ok else 'no'} |" for name, value, ok in targets(report)]
    return "\n".join(lines) + "\n"


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    for name, rows in report["concurrency"].items():
        ax.plot(LEVELS, [rows[n]["aggregate_tps"] for n in LEVELS], marker="o", label=name)
    ax.set_xscale("log", base=2)
    ax.set_xticks(LEVELS, [str(n) for n in LEVELS])
    ax.set_xlabel("concurrent streams")
    ax.set_ylabel("aggregate tokens/s")
    ax.set_ylim(bottom=0)
    ax.set_title(f"SmolLM2 Q4_1, {report['settings']['threads']} threads")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), "unknown CPU")
    mem = int(Path("/proc/meminfo").read_text().split()[1]) / 1024 / 1024
    return f"{os.cpu_count()} cores ({cpu}), {mem:.0f} GiB RAM, Python {sys.version.split()[0]}"

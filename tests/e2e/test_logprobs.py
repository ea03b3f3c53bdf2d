"""``logprobs`` / ``top_logprobs`` on the real SmolLM2 through the openai SDK (issue 16): chat in
OpenAI's ``choices[].logprobs.content[]`` shape, streamed and not, and completions in the
legacy shape (tokens, token_logprobs, top_logprobs, text_offset)."""

from __future__ import annotations

import pytest


MODEL = "smollm2"
ASK = [{"role": "user", "content": "Name three colours."}]


def test_chat_logprobs_and_top_logprobs(client):
    reply = client.chat.completions.create(model=MODEL, messages=ASK, max_tokens=8, temperature=0,
                                           logprobs=True, top_logprobs=3)
    choice = reply.choices[0]
    entries = choice.logprobs.content
    assert len(entries) == reply.usage.completion_tokens
    assert "".join(e.token for e in entries) == choice.message.content
    for entry in entries:
        assert entry.logprob <= 0 and bytes(entry.bytes).decode("utf-8", "replace") == entry.token
        assert len(entry.top_logprobs) == 3
        ranked = [t.logprob for t in entry.top_logprobs]
        assert ranked == sorted(ranked, reverse=True)
        # greedy decoding: the chosen token is the most likely one
        assert entry.top_logprobs[0].token == entry.token
        assert entry.top_logprobs[0].logprob == pytest.approx(entry.logprob, abs=1e-4)


def test_chat_logprobs_streamed(client):
    stream = client.chat.completions.create(model=MODEL, messages=ASK, max_tokens=8, temperature=0,
                                            logprobs=True, top_logprobs=1, stream=True)
    text, tokens = [], []
    for chunk in stream:
        for choice in chunk.choices:
            if choice.delta.content:
                text.append(choice.delta.content)
                assert choice.logprobs is not None
                tokens.extend(e.token for e in choice.logprobs.content)
    assert text and "".join(tokens) == "".join(text)


def test_no_logprobs_unless_asked(client):
    reply = client.chat.completions.create(model=MODEL, messages=ASK, max_tokens=4, temperature=0)
    assert reply.choices[0].logprobs is None


def test_completion_logprobs_legacy_shape(client):
    reply = client.completions.create(model=MODEL, prompt="The sky is", max_tokens=5, temperature=0, logprobs=2)
    choice = reply.choices[0]
    lp = choice.logprobs
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == len(lp.text_offset) == 5
    assert "".join(lp.tokens) == choice.text
    assert lp.text_offset[0] == 0 and all(x <= 0 for x in lp.token_logprobs)
    assert all(1 <= len(top) <= 2 for top in lp.top_logprobs)

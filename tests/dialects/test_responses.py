"""OpenAI's Responses API on a real ``local-ai run`` (echo backend), driven by the official openai
SDK's ``client.responses``, unchanged; the store survives a restart and is bounded."""

from __future__ import annotations

import httpx
import openai
import pytest

from localai.testing.server import LocalAIServer
from tests.dialects.helpers import dialect_models, tool_backend_script

ECHO = "echo: user: hello world assistant:"


@pytest.fixture(scope="module")
def server(dialect_server):
    return dialect_server


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.base_url + "/v1", api_key="x", max_retries=0, timeout=30)


def test_create_with_a_string(client):
    response = client.responses.create(model="echo", input="hello world")
    assert response.object == "response" and response.status == "completed" and response.model == "echo"
    assert response.id.startswith("resp_")
    assert response.output_text == ECHO
    (item,) = response.output
    assert item.type == "message" and item.role == "assistant" and item.content[0].type == "output_text"
    assert (response.usage.input_tokens, response.usage.output_tokens, response.usage.total_tokens) == (4, 5, 9)


def test_items_instructions_and_limits(client):
    response = client.responses.create(model="echo", instructions="Be brief.", max_output_tokens=3, input=[
        {"role": "user", "content": [{"type": "input_text", "text": "a b c"}]}])
    assert response.output_text == "echo: system: Be"
    assert response.status == "incomplete" and response.incomplete_details.reason == "max_output_tokens"


def test_stream_typed_events_with_sequence_numbers(client):
    with client.responses.stream(model="echo-slow", input="hello world") as stream:
        events = list(stream)
        final = stream.get_final_response()
    kinds = [e.type for e in events]
    assert kinds[:4] == ["response.created", "response.in_progress", "response.output_item.added",
                         "response.content_part.added"]
    assert kinds[4:9] == ["response.output_text.delta"] * 5
    assert kinds[9:] == ["response.output_text.done", "response.content_part.done", "response.output_item.done",
                         "response.completed"]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == ECHO
    assert final.output_text == ECHO and final.status == "completed" and final.usage.output_tokens == 5


def test_stored_continues_and_can_be_fetched_and_deleted(client):
    first = client.responses.create(model="echo", input="first turn")
    second = client.responses.create(model="echo", input="second turn", previous_response_id=first.id)
    assert second.previous_response_id == first.id
    assert second.output_text == ("echo: user: first turn assistant: echo: user: first turn assistant: "
                                  "user: second turn assistant:")
    fetched = client.responses.retrieve(second.id)
    assert fetched.id == second.id and fetched.output_text == second.output_text
    items = client.responses.input_items.list(second.id)
    assert [i.content[0].text for i in items.data] == ["second turn"]
    deleted = client.responses.delete(first.id)
    assert deleted is None or getattr(deleted, "deleted", True)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(first.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.create(model="echo", input="x", previous_response_id=first.id)


def test_store_false_is_not_kept(client):
    response = client.responses.create(model="echo", input="hi", store=False)
    assert response.store is False
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(response.id)


def test_errors_in_openai_shape(client, server):
    with pytest.raises(openai.NotFoundError) as info:
        client.responses.create(model="nope", input="x")
    assert info.value.body["code"] == "model_not_found"
    bad = httpx.post(server.url("/v1/responses"), json={"model": "echo", "input": [{"type": "bogus"}]})
    assert bad.status_code == 400 and "bogus" in bad.json()["error"]["message"]


def test_store_survives_a_restart_and_is_bounded(tmp_path):
    dialect_models(tmp_path / "models")
    env = {"LOCALAI_EXTERNAL_GRPC_BACKENDS": f"echo:{tool_backend_script(tmp_path / 'backend')}",
           "LOCALAI_RESPONSES_STORE_MAX": "3", "LOCALAI_DATA_PATH": str(tmp_path / "data")}
    with LocalAIServer(tmp_path / "models", env=env, cwd=tmp_path) as srv:
        client = openai.OpenAI(base_url=srv.base_url + "/v1", api_key="x", max_retries=0, timeout=30)
        ids = [client.responses.create(model="echo", input=f"turn {i}").id for i in range(5)]
    assert (tmp_path / "data" / "responses.sqlite3").is_file()
    with LocalAIServer(tmp_path / "models", env=env, cwd=tmp_path) as srv:
        client = openai.OpenAI(base_url=srv.base_url + "/v1", api_key="x", max_retries=0, timeout=30)
        for old in ids[:2]:  # beyond the bound of 3: the oldest went first
            with pytest.raises(openai.NotFoundError):
                client.responses.retrieve(old)
        assert [client.responses.retrieve(i).output_text for i in ids[2:]] == \
            [f"echo: user: turn {i} assistant:" for i in (2, 3, 4)]
        follow = client.responses.create(model="echo", input="more", previous_response_id=ids[4])
        assert follow.output_text.startswith("echo: user: turn 4 assistant:")
    env["LOCALAI_RESPONSES_STORE_TTL"] = "0.5"  # and by age
    import time
    time.sleep(0.6)
    with LocalAIServer(tmp_path / "models", env=env, cwd=tmp_path) as srv:
        client = openai.OpenAI(base_url=srv.base_url + "/v1", api_key="x", max_retries=0, timeout=30)
        with pytest.raises(openai.NotFoundError):
            client.responses.retrieve(ids[4])


def test_openai_agents_runs_on_the_responses_api(server):
    import asyncio

    from agents import Agent, OpenAIResponsesModel, Runner, set_tracing_disabled

    set_tracing_disabled(True)

    async def run():
        model = OpenAIResponsesModel(model="echo", openai_client=openai.AsyncOpenAI(
            base_url=server.base_url + "/v1", api_key="x", max_retries=0))
        agent = Agent(name="echoer", instructions="Be brief.", model=model)
        result = await Runner.run(agent, "hello world")
        streamed = Runner.run_streamed(agent, "hello stream")
        kinds = [event.type async for event in streamed.stream_events()]
        return result.final_output, streamed.final_output, kinds

    output, streamed_output, kinds = asyncio.run(run())
    assert output == "echo: system: Be brief. user: hello world assistant:"
    assert streamed_output == "echo: system: Be brief. user: hello stream assistant:"
    assert "raw_response_event" in kinds

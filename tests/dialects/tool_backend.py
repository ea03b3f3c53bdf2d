"""The echo backend, plus deterministic tool calls (run as a script: ``tool_backend.py --addr``).

When a request carries ``Tools`` and its ``ToolChoice`` forces a call (``"required"`` or a named
function), or the prompt contains ``CALL_TOOL``, it answers with one call of the chosen (else the
first) tool in ``Reply.chat_deltas``, the way LLM backends do: id and name first, then the
arguments' JSON in two pieces. Every string argument is ``"echo"``, every other one ``1``.
With a JSON schema to follow (``Metadata["json_schema"]``) and no call, it answers
``{"keys": [...the schema's property names...]}``. Otherwise it is the echo backend.
"""

from __future__ import annotations

import json
import sys

from localai.backend_server import serve
from localai.proto import backend_pb2 as pb
from localai.testing.echo_backend import EchoBackend, _input_text


def chosen_tool(request) -> dict | None:
    if not request.Tools:
        return None
    tools = json.loads(request.Tools)
    choice = json.loads(request.ToolChoice) if request.ToolChoice[:1] in ('"', "{") else request.ToolChoice
    if isinstance(choice, dict):
        name = choice["function"]["name"]
        return next(t for t in tools if t["function"]["name"] == name)
    if choice == "required" or "CALL_TOOL" in _input_text(request):
        return tools[0]
    return None


def arguments(tool: dict) -> str:
    props = (tool["function"].get("parameters") or {}).get("properties") or {}
    return json.dumps({k: "echo" if v.get("type") == "string" else 1 for k, v in props.items()})


class ToolBackend(EchoBackend):
    def _call(self, request):
        tool = chosen_tool(request)
        if tool is None:
            return None
        args = arguments(tool)
        half = len(args) // 2
        return [pb.ToolCallDelta(index=0, id="call_echo1", name=tool["function"]["name"], arguments=""),
                pb.ToolCallDelta(index=0, arguments=args[:half]), pb.ToolCallDelta(index=0, arguments=args[half:])]

    @staticmethod
    def _json(request) -> bytes | None:
        schema = request.Metadata.get("json_schema")
        if not schema:
            return None
        return json.dumps({"keys": sorted((json.loads(schema).get("properties") or {}))}).encode()

    def Predict(self, request, context):
        pieces = self._call(request)
        if pieces is None:
            answer = self._json(request)
            if answer is not None:
                return pb.Reply(message=answer, tokens=4, prompt_tokens=5)
            return super().Predict(request, context)
        return pb.Reply(chat_deltas=[pb.ChatDelta(tool_calls=pieces)], tokens=3, prompt_tokens=5)

    def PredictStream(self, request, context):
        pieces = self._call(request)
        if pieces is None:
            answer = self._json(request)
            if answer is not None:
                yield pb.Reply(message=answer)
                yield pb.Reply(tokens=4, prompt_tokens=5)
                return
            yield from super().PredictStream(request, context)
            return
        for piece in pieces:
            yield pb.Reply(chat_deltas=[pb.ChatDelta(tool_calls=[piece])])
        yield pb.Reply(tokens=3, prompt_tokens=5)


if __name__ == "__main__":
    serve(ToolBackend(), sys.argv[1:], prog="tool-backend")

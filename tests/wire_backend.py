"""The tool backend (``tests/dialects/tool_backend.py``) that also reports logprobs when asked
(``PredictOptions.Logprobs``), in the chat shape LLM backends send (run as a script: ``--addr``)."""

from __future__ import annotations

import json
import sys

from localai.backend_server import serve
from tests.dialects.tool_backend import ToolBackend


def logprobs(text: str, top: int) -> bytes:
    entries = [{"token": token, "logprob": -0.5, "bytes": list(token.encode()),
                "top_logprobs": [{"token": token, "logprob": -0.5, "bytes": list(token.encode())}][:top]}
               for token in text.split(" ") if token]
    return json.dumps({"content": entries}).encode()


class WireBackend(ToolBackend):
    def Predict(self, request, context):
        reply = super().Predict(request, context)
        if request.Logprobs and reply.message:
            reply.logprobs = logprobs(reply.message.decode(), request.TopLogprobs)
        return reply

    def PredictStream(self, request, context):
        for reply in super().PredictStream(request, context):
            if request.Logprobs and reply.message:
                reply.logprobs = logprobs(reply.message.decode(), request.TopLogprobs)
            yield reply


if __name__ == "__main__":
    serve(WireBackend(), sys.argv[1:], prog="wire-backend")

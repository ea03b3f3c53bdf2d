"""Observability: Prometheus metrics (``GET /metrics``) and request ids (``X-Request-ID``).

HTTP metrics are labelled by the matched URL rule (``/v1/chat/completions``), never the raw
path, so scanners cannot blow up the label set. Request ids are echoed when the client sends a
sane one, generated otherwise, and appear in every log line written while serving the request.
"""

from __future__ import annotations

import contextvars
import logging
import re
import time
import uuid
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Gauge, Histogram, generate_latest
from quart import Quart, Response, g, request

HTTP_REQUESTS = Counter("localai_http_requests", "HTTP requests by method, route and status",
                        ["method", "route", "status"])
HTTP_LATENCY = Histogram("localai_http_request_duration_seconds",
                         "Seconds until the response headers (streams: until the first event)",
                         ["method", "route"],
                         buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120))
TOKENS = Counter("localai_tokens_generated", "Completion tokens generated, by model", ["model"])
PROMPT_TOKENS = Counter("localai_prompt_tokens", "Prompt tokens by model, computed or served from the KV cache",
                        ["model", "source"])
QUEUE_DEPTH = Gauge("localai_model_queue_depth", "Requests waiting for a model's concurrency limit", ["model"])
IN_FLIGHT = Gauge("localai_model_in_flight", "Requests admitted to a model (streams until they end)", ["model"])
BACKEND_LOADS = Counter("localai_backend_loads", "Models loaded by a backend", ["model", "backend"])
BACKEND_LOAD_FAILURES = Counter("localai_backend_load_failures", "Model loads that failed", ["model", "backend"])
BACKEND_CRASHES = Counter("localai_backend_crashes",
                          "Backends that exited unexpectedly (restarted on the next request)", ["model", "backend"])
GALLERY_JOBS = Counter("localai_gallery_jobs", "Gallery jobs finished, by kind and outcome", ["kind", "outcome"])

REQUEST_ID = contextvars.ContextVar("localai_request_id", default="")
REQUEST_ID_HEADER = "X-Request-ID"
VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:@+=/-]{1,128}$")
UNMATCHED = "<unmatched>"


class RequestIdFilter(logging.Filter):
    """Adds ``record.request_id`` (" [id]" while serving a request, else "") for log formats."""

    def filter(self, record: logging.LogRecord) -> bool:
        rid = REQUEST_ID.get()
        record.request_id = f" [{rid}]" if rid else ""
        return True


def count_tokens(request_body: Any, result: Any) -> None:
    """Count a finished chat/completion's ``usage``: completion tokens, and prompt tokens computed
    vs served from the KV cache (an after-inference hook)."""
    usage = result.get("usage") if isinstance(result, dict) else None
    if not isinstance(usage, dict):
        return
    model = result.get("model") or (request_body.get("model") if isinstance(request_body, dict) else None) or ""
    if usage.get("completion_tokens"):
        TOKENS.labels(model).inc(usage["completion_tokens"])
    prompt = usage.get("prompt_tokens") or 0
    cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
    if prompt:
        PROMPT_TOKENS.labels(model, "computed").inc(max(0, prompt - cached))
        PROMPT_TOKENS.labels(model, "cached").inc(min(cached, prompt))


def route_label() -> str:
    rule = request.url_rule
    return rule.rule if rule is not None else UNMATCHED


async def start_request() -> None:
    incoming = request.headers.get(REQUEST_ID_HEADER, "")
    rid = incoming if VALID_REQUEST_ID.match(incoming) else uuid.uuid4().hex
    g.request_id = rid
    g.request_start = time.perf_counter()
    REQUEST_ID.set(rid)


async def finish_request(response: Response) -> Response:
    rid = g.get("request_id") or uuid.uuid4().hex
    response.headers[REQUEST_ID_HEADER] = rid
    route = route_label()
    HTTP_REQUESTS.labels(request.method, route, str(response.status_code)).inc()
    start = g.get("request_start")
    if start is not None:
        HTTP_LATENCY.labels(request.method, route).observe(time.perf_counter() - start)
    return response


async def metrics_view() -> Response:
    return Response(generate_latest(REGISTRY), content_type=CONTENT_TYPE_LATEST)


def install(app: Quart) -> None:
    """Request ids and HTTP metrics (register before any other before_request hook) and ``/metrics``."""
    app.before_request(start_request)
    app.after_request(finish_request)
    app.add_url_rule("/metrics", "metrics", metrics_view, methods=["GET"])

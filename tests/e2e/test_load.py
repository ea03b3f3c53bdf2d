"""End to end, bounded load: concurrent streams and a burst of non-streaming chats against the
real SmolLM2 model, with a per-model queue small enough to overflow. Every request completes or
gets 503 + Retry-After; nothing hangs, is lost or stays in flight."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import httpx
import pytest

from localai.testing.server import LocalAIServer

spec = importlib.util.spec_from_file_location("load_test", Path(__file__).parents[2] / "bench" / "load_test.py")
load_test = importlib.util.module_from_spec(spec)
spec.loader.exec_module(load_test)

pytestmark = pytest.mark.e2e


def test_overload_gives_503_with_retry_after_and_loses_nothing(tmp_path):
    env = {"LOCALAI_MAX_CONCURRENT_PER_MODEL": "2", "LOCALAI_MAX_QUEUE_PER_MODEL": "4"}
    with LocalAIServer(tmp_path, args=["--threads", "2"], env=env) as server:
        report = load_test.run_load(server.base_url, streams=16, requests=100, concurrency=8, max_tokens=8,
                                    request_max_tokens=4, timeout=60, deadline=80, kernel_pid=server.pid)
        print("\n" + load_test.table(report))
        streams, requests = report["streams"], report["requests"]
        for phase in (streams, requests):
            assert phase["failed"] == 0, phase["failures"]  # includes any 503 without Retry-After
            assert phase["ok"] + phase["busy_503"] == phase["requests"]
            assert phase["ok"] >= 1
        assert streams["requests"] == 16 and requests["requests"] == 100
        # 2 running + 4 queued: some of the 16-stream burst is turned away at once.
        assert streams["busy_503"] >= 1
        assert report["in_flight_after"] == {"smollm2": 0}
        assert report["serves_after"]
        assert httpx.get(server.url("/readyz"), timeout=10).status_code == 200

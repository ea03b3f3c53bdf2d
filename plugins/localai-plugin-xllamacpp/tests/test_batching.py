"""Concurrent requests to one model are decoded together (parallel slots), not in line."""

from __future__ import annotations

import threading
import time

from localai.proto import backend_pb2 as pb

PROMPT = "Write a long, detailed essay about the history of the Roman Empire."


def stream_times(stub, n: int, tokens: int = 48) -> list[tuple[float, float, int]]:
    """(first token time, end time, pieces) of ``n`` concurrent streams, started together."""
    results: list[tuple[float, float, int]] = [None] * n  # type: ignore[list-item]
    barrier = threading.Barrier(n)

    def one(i: int) -> None:
        barrier.wait()
        first = 0.0
        pieces = 0
        for reply in stub.PredictStream(pb.PredictOptions(Prompt=PROMPT, Tokens=tokens, IgnoreEOS=True,
                                                          Temperature=0)):
            if reply.message:
                pieces += 1
                first = first or time.monotonic()
        results[i] = (first, time.monotonic(), pieces)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return results


def overlapping(results) -> bool:
    """True when every stream had its first token before any stream finished."""
    return max(first for first, _, _ in results) < min(end for _, end, _ in results)


def test_four_streams_are_decoded_together(loaded):
    results = stream_times(loaded, 4)
    assert all(pieces >= 40 for _, _, pieces in results)
    assert overlapping(results)


def test_one_slot_serves_them_in_line(start_with_slots):
    """The same check fails with ``parallel:1``: it is the slots that make streams overlap."""
    with start_with_slots(1) as stub:
        results = stream_times(stub, 3)
    assert all(pieces >= 40 for _, _, pieces in results)
    assert not overlapping(results)

"""CPU to read a predict body and its candles: the hot route's first two steps, without the rest.

Usage: python -m bench.body_read. 2,000 distinct predict bodies of 64 candles through
`fast_body.predict_request` and `inputs.to_candles`, best of seven passes (thread CPU time), so two
commits' readers can be compared in their worktrees, interleaved, on a machine whose speed swings.
"""

from __future__ import annotations

import json
import time

from aifx.serving.fast_body import predict_request
from aifx.serving.inputs import to_candles
from bench.payloads import predict_bodies


def main() -> None:
    raws = [json.dumps(b).encode() for b in predict_bodies(2000, seed=5, distinct=True)]
    best = float("inf")
    for _ in range(7):
        start = time.thread_time()
        for raw in raws:
            req = predict_request(raw)
            assert req is not None and req.data is not None  # the bench's bodies take the fast path
            to_candles(req.data)
        best = min(best, (time.thread_time() - start) / len(raws) * 1e6)
    print(f"read + to_candles: best {best:.1f} us per predict body")


if __name__ == "__main__":
    main()

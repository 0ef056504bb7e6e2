"""A sliding-window rate limit per calling principal, kept by each replica.

The window is exact: a principal may make ``limit`` requests in any 60
seconds, and the answer to one more says when the oldest leaves the window.
"""

from __future__ import annotations

import math
import time
from collections import deque

from shared.errors import RateLimited

WINDOW_SECONDS = 60.0
_MAX_PRINCIPALS = 50_000


class RateLimiter:
    def __init__(self, window_seconds: float = WINDOW_SECONDS) -> None:
        self._window = window_seconds
        self._requests: dict[str, deque[float]] = {}

    def admit(self, principal: str, limit: int, *, cost: int = 1) -> None:
        """Count ``cost`` requests (a batch counts each item), or none of them
        and raise ``RateLimited`` with ``retry_after``."""
        now = time.monotonic()
        requests = self._requests.get(principal)
        if requests is None:
            self._make_room(now)
            requests = self._requests[principal] = deque()

        while requests and requests[0] <= now - self._window:
            requests.popleft()
        if len(requests) + cost > limit:
            # When enough of the window frees up for the whole cost.
            index = min(max(len(requests) + cost - limit - 1, 0), len(requests) - 1)
            oldest = requests[index] if requests else now
            retry_after = max(1, math.ceil(oldest + self._window - now))
            raise RateLimited(
                "rate_limited",
                f"More than {limit} requests a minute",
                retry_after=retry_after,
            )
        requests.extend([now] * cost)

    def release(self, principal: str) -> None:
        """Take back the request counted last, for one refused after counting."""
        requests = self._requests.get(principal)
        if requests:
            requests.pop()

    def _make_room(self, now: float) -> None:
        # Many principals at once (a flood of distinct subjects) must not
        # grow memory without bound: idle ones go first, then the oldest.
        if len(self._requests) < _MAX_PRINCIPALS:
            return
        idle = [
            p for p, r in self._requests.items() if not r or r[-1] <= now - self._window
        ]
        for principal in idle:
            del self._requests[principal]
        while len(self._requests) >= _MAX_PRINCIPALS:
            del self._requests[next(iter(self._requests))]

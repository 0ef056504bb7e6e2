"""When a call between services is worth another try, and how long to wait.

Only failures that say nothing reached the other side's logic are retried:
a connection that could not be made or was cut, and the 502/503/504 a proxy
or a stopping server answers with. A timeout waiting for a reply is not: the
other side may still be working, and a second request would double its load.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

import httpx

T = TypeVar("T")

RETRYABLE_STATUS: frozenset[int] = frozenset({502, 503, 504})

_CONNECTION_ERRORS: tuple[type[Exception], ...] = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.ReadError,
    httpx.WriteError,
    httpx.RemoteProtocolError,
)


def is_connection_error(error: BaseException) -> bool:
    """True for a connection refused, reset or closed before a reply."""
    return isinstance(error, _CONNECTION_ERRORS)


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with jitter: ``attempts`` tries in all, the n-th
    wait drawn between half and all of ``base * 2**n``, capped at ``cap``.

    The jitter keeps replicas that failed together from retrying together.
    """

    attempts: int = 3
    base: float = 0.2
    cap: float = 5.0

    def delay(self, retry: int) -> float:
        """The wait before retry number ``retry`` (0 for the first retry)."""
        # The exponent stops where a float ends: from retry 1024 on, 2**retry
        # no longer converts and the wait would be an OverflowError, not the cap.
        ceiling = min(self.cap, self.base * 2.0 ** min(retry, 1023))
        return random.uniform(ceiling / 2, ceiling)  # noqa: S311 (not for secrets)

    def delays(self) -> Iterator[float]:
        """The waits between the tries, one fewer than ``attempts``."""
        for retry in range(self.attempts - 1):
            yield self.delay(retry)


class Retryable(Exception):
    """A failure worth another try (nothing reached the other side's logic);
    ``error`` names it for the log. The transport error, if any, is its
    cause."""

    def __init__(self, error: str) -> None:
        super().__init__(error)
        self.error = error


async def retrying(
    backoff: Backoff,
    attempt: Callable[[], Awaitable[T]],
    on_retry: Callable[[Retryable, float], None],
) -> T:
    """``attempt()`` until it does not raise ``Retryable``, waiting
    ``backoff`` between tries; ``on_retry`` hears of each wait before it
    starts. The last try's ``Retryable`` is raised when the tries run out."""
    delays = backoff.delays()
    while True:
        try:
            return await attempt()
        except Retryable as failure:
            delay = next(delays, None)
            if delay is None:
                raise
            on_retry(failure, delay)
            await asyncio.sleep(delay)

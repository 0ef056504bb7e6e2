"""A circuit breaker for one downstream service.

After ``threshold`` failures in a row the circuit opens: calls fail at once
instead of waiting on a service that is down, and the work they carry waits
in the tasks table. While open, the service's ``/ready`` is probed; the
circuit closes when it answers ready. A service that says it is not ready
opens the circuit the same way, so no work is sent to it.
"""

from __future__ import annotations

import logging
import time
from typing import Literal

from shared.logging import log_event

logger = logging.getLogger(__name__)

State = Literal["closed", "open"]


class CircuitBreaker:
    def __init__(self, name: str, *, threshold: int = 5) -> None:
        self.name = name
        self._threshold = threshold
        self._failures = 0
        self._state: State = "closed"
        self._reason = ""
        self._opened_at = 0.0

    @property
    def state(self) -> State:
        return self._state

    @property
    def closed(self) -> bool:
        return self._state == "closed"

    @property
    def reason(self) -> str:
        return self._reason

    def succeeded(self) -> None:
        self._failures = 0
        self._close()

    def failed(self) -> None:
        self._failures += 1
        if self._failures >= self._threshold:
            self.open(f"{self._failures} failed calls in a row")

    def probed(self, ready: bool, detail: str = "") -> None:
        """The result of asking the service whether it is ready."""
        if ready:
            self._failures = 0
            self._close()
        else:
            self.open(detail or "not ready")

    def open(self, reason: str) -> None:
        if self._state == "open":
            return
        self._state = "open"
        self._reason = reason
        self._opened_at = time.monotonic()
        log_event(
            logger,
            "circuit.opened",
            level=logging.WARNING,
            target=self.name,
            reason=reason,
        )

    def _close(self) -> None:
        if self._state == "closed":
            return
        self._state = "closed"
        log_event(
            logger,
            "circuit.closed",
            target=self.name,
            open_seconds=round(time.monotonic() - self._opened_at, 1),
        )

"""Calls to another service's ``/a2a``, with this service's token on every call
and, for a DPoP-bound token, a fresh proof over the exact bytes sent.

A connection failure or a 502/503/504 is tried again after a backoff (every
method of the mesh is safe to repeat); what still fails becomes
``DependencyUnavailable`` and counts against the service's circuit breaker,
which then fails calls at once until the service says it is ready again. A
JSON-RPC error from the other side comes back as ``RemoteError`` with its
code and data intact.
"""

from __future__ import annotations

import asyncio
import ipaddress
import itertools
import json
import logging
import time
from typing import Any
from urllib.parse import urlsplit

import httpx

from shared.auth.service_token import ServiceTokenProvider
from shared.circuit import CircuitBreaker
from shared.errors import (
    DependencyUnavailable,
    RemoteError,
    TokenRevoked,
    Unauthenticated,
)
from shared.logging import correlation_id, log_event
from shared.retry import (
    RETRYABLE_STATUS,
    Backoff,
    Retryable,
    is_connection_error,
    retrying,
)

logger = logging.getLogger(__name__)

_ids = itertools.count(1)
# Refusals a new token can cure: expired or refused, or revoked by an admin.
_RENEWABLE = frozenset({Unauthenticated.code, TokenRevoked.code})


class AgentClient:
    """A JSON-RPC client for one downstream service."""

    def __init__(
        self,
        name: str,
        base_url: str,
        *,
        http: httpx.AsyncClient,
        tokens: ServiceTokenProvider,
        backoff: Backoff | None = None,
        breaker: CircuitBreaker | None = None,
    ) -> None:
        self.name = name
        self.base_url = base_url.rstrip("/")
        self._url = f"{self.base_url}/a2a"
        self._tls_extensions = pinned_server_name(name, self.base_url)
        self._http = http
        self._tokens = tokens
        self._backoff = backoff or Backoff()
        self.breaker = breaker or CircuitBreaker(name)

    async def call(self, method: str, params: dict[str, Any]) -> Any:
        """Call ``method``; a refused token is renewed and the call tried once more."""
        if not self.breaker.closed:
            raise DependencyUnavailable(
                self.name, f"{self.name} is unavailable ({self.breaker.reason})"
            )
        try:
            return await self._call_retrying(method, params)
        except RemoteError as error:
            if error.remote_code not in _RENEWABLE:
                raise
            self._tokens.invalidate()
            return await self._call_retrying(method, params)

    async def ready(self) -> tuple[bool, str]:
        """Whether the service says it is ready, and why not."""
        try:
            response = await self._http.get(
                f"{self.base_url}/ready", extensions=self._tls_extensions
            )
        except httpx.HTTPError as exc:
            return False, f"unreachable: {type(exc).__name__}"
        if response.status_code == 200:
            return True, ""
        return False, f"not ready (HTTP {response.status_code})"

    async def watch(self, *, interval: float) -> None:
        """Forever: ask the service whether it is ready, and open or close
        the circuit by its answer; more often while the circuit is open."""
        while True:
            ready, detail = await self.ready()
            self.breaker.probed(ready, detail)
            await asyncio.sleep(interval if ready else min(interval, 1.0))

    async def _call_retrying(self, method: str, params: dict[str, Any]) -> Any:
        def retrying_after(failure: Retryable, delay: float) -> None:
            log_event(
                logger,
                "call.retrying",
                level=logging.WARNING,
                target=self.name,
                method=method,
                error=failure.error,
                delay_ms=round(delay * 1000),
            )

        try:
            result = await retrying(
                self._backoff,
                lambda: self._call_once(method, params),
                retrying_after,
            )
        except Retryable as failure:
            self.breaker.failed()
            raise DependencyUnavailable(self.name) from failure.__cause__
        self.breaker.succeeded()
        return result

    async def _call_once(self, method: str, params: dict[str, Any]) -> Any:
        request_id = next(_ids)
        request = {
            "jsonrpc": "2.0",
            "method": method,
            "params": params,
            "id": request_id,
        }
        body = json.dumps(request, separators=(",", ":")).encode()
        token = await self._tokens.token()
        headers = {
            "Authorization": f"{token.scheme} {token.value}",
            "Content-Type": "application/json",
        }
        key = self._tokens.dpop_key
        if token.scheme == "DPoP" and key is not None:
            headers["DPoP"] = key.proof(
                "POST", self._url, access_token=token.value, body=body
            )
        if cid := correlation_id.get():
            headers["X-Correlation-ID"] = cid

        started = time.perf_counter()
        try:
            response = await self._http.post(
                self._url,
                content=body,
                headers=headers,
                extensions=self._tls_extensions,
            )
            if response.status_code in RETRYABLE_STATUS:
                raise Retryable(f"HTTP {response.status_code}")
            reply = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            if is_connection_error(exc):
                raise Retryable(type(exc).__name__) from exc
            # Too slow, or an answer that is not JSON: the service is unwell.
            self.breaker.failed()
            log_event(
                logger,
                "call.failed",
                level=logging.WARNING,
                target=self.name,
                method=method,
                error=type(exc).__name__,
            )
            raise DependencyUnavailable(self.name) from exc

        log_event(
            logger,
            "call.done",
            target=self.name,
            method=method,
            status=response.status_code,
            duration_ms=round((time.perf_counter() - started) * 1000, 1),
        )
        return _result(self.name, reply)


def pinned_server_name(name: str, base_url: str) -> dict[str, str]:
    """The name the agent's certificate must carry, when the URL has none.

    Every mesh certificate also names localhost and 127.0.0.1, so a call to
    an address would accept any of them, the database's included: the
    certificate is then checked against the agent's own name instead.
    """
    host = urlsplit(base_url).hostname or ""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if host != "localhost":
            return {}
    return {"sni_hostname": name}


def _result(target: str, body: Any) -> Any:
    if not isinstance(body, dict):
        raise DependencyUnavailable(target, f"{target} sent a malformed reply")
    if "error" in body:
        error = body["error"]
        if not isinstance(error, dict) or not isinstance(error.get("code"), int):
            raise DependencyUnavailable(target, f"{target} sent a malformed error")
        raise RemoteError(
            error["code"], str(error.get("message", "")), error.get("data")
        )
    if "result" not in body:
        raise DependencyUnavailable(target, f"{target} sent a malformed reply")
    return body["result"]

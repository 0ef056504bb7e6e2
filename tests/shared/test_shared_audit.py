"""Audit: every security decision is a log line; refusals are also rows for
the admin API, written in batches, bounded, and never with a token in them."""

from __future__ import annotations

import asyncio
import logging

import pytest

import shared.auth.audit as audit_module
from shared.auth.audit import Audit
from shared.auth.dpop import DpopKey
from shared.auth.gate import Arrival, SecurityGate
from shared.auth.store import SecurityEvent
from shared.errors import AuthError
from shared.logging import JsonFormatter, correlation_id
from tests.shared.kit import A2A_URL, MemoryStore, SigningKey, bound_claims, sign


def refuse(audit: Audit, n: int = 1) -> None:
    for i in range(n):
        audit.record(
            "authentication_failure",
            outcome="refused",
            reason="expired",
            path="/a2a",
            client_address=f"10.0.0.{i}",
        )


def audit_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "shared.audit"]


async def test_refusals_are_written_together_on_flush(store: MemoryStore) -> None:
    audit = Audit("extractor", store)
    refuse(audit, 3)

    assert store.batches == []  # nothing written per request
    await audit.flush()

    [batch] = store.batches
    assert [e.client_address for e in batch] == ["10.0.0.0", "10.0.0.1", "10.0.0.2"]


async def test_a_refusal_row_holds_the_decision_and_the_caller(
    store: MemoryStore,
) -> None:
    audit = Audit("extractor", store)
    token = correlation_id.set("cid-7")
    try:
        audit.record(
            "token_revoked",
            outcome="refused",
            reason="token_revoked",
            principal="sub-1",
            client_id="orchestrator",
            jti="abcdef01",
            method="extract_document",
            path="/a2a",
            client_address="10.0.0.7",
        )
    finally:
        correlation_id.reset(token)
    await audit.flush()

    assert store.events == [
        SecurityEvent(
            service="extractor",
            event="token_revoked",
            outcome="refused",
            reason="token_revoked",
            principal="sub-1",
            client_id="orchestrator",
            method="extract_document",
            path="/a2a",
            client_address="10.0.0.7",
            jti_prefix="abcdef01",
            correlation_id="cid-7",
        )
    ]


async def test_a_flood_is_written_in_batches_of_500(store: MemoryStore) -> None:
    audit = Audit("extractor", store)
    refuse(audit, 1001)

    await audit.flush()

    assert [len(batch) for batch in store.batches] == [500, 500, 1]


async def test_method_executed_is_logged_but_not_stored(
    store: MemoryStore, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    audit = Audit("extractor", store)

    audit.record("method_executed", outcome="ok", persist=False, method="ping")
    await audit.flush()

    [line] = audit_lines(caplog)
    assert (line.getMessage(), line.levelno) == ("method_executed", logging.INFO)
    assert store.batches == []


async def test_refusal_is_logged_as_a_warning_as_well_as_stored(
    store: MemoryStore, caplog: pytest.LogCaptureFixture
) -> None:
    audit = Audit("extractor", store)

    refuse(audit)

    [line] = audit_lines(caplog)
    assert (line.getMessage(), line.levelno) == (
        "authentication_failure",
        logging.WARNING,
    )
    assert line.__dict__["mesh_fields"]["reason"] == "expired"


async def test_rows_wait_for_a_database_that_is_down(
    store: MemoryStore, caplog: pytest.LogCaptureFixture
) -> None:
    audit = Audit("extractor", store)
    refuse(audit, 2)
    store.down = True

    await audit.flush()
    store.down = False
    refuse(audit)
    await audit.flush()

    assert [e.client_address for e in store.events] == [
        "10.0.0.0",
        "10.0.0.1",
        "10.0.0.0",
    ]
    assert "audit.write_deferred" in [r.getMessage() for r in audit_lines(caplog)]


async def test_unwritten_rows_are_bounded_and_the_oldest_dropped(
    monkeypatch: pytest.MonkeyPatch, store: MemoryStore
) -> None:
    monkeypatch.setattr(audit_module, "_MAX_PENDING", 3)
    audit = Audit("extractor", store)
    store.down = True
    refuse(audit, 5)
    await audit.flush()
    store.down = False

    await audit.flush()

    assert audit.dropped == 2
    assert [e.client_address for e in store.events] == [
        "10.0.0.2",
        "10.0.0.3",
        "10.0.0.4",
    ]


async def test_pending_rows_are_written_when_the_service_stops(
    store: MemoryStore,
) -> None:
    audit = Audit("extractor", store)
    writer = asyncio.create_task(audit.run())
    await asyncio.sleep(0)
    refuse(audit)

    writer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await writer

    assert len(store.events) == 1


async def test_long_values_are_cut_in_the_row(store: MemoryStore) -> None:
    audit = Audit("extractor", store)

    audit.record("invalid_input", outcome="refused", path="/a2a/" + "x" * 1000)
    await audit.flush()

    [event] = store.events
    assert event.path is not None and len(event.path) == 200


async def test_audit_without_a_store_only_logs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    audit = Audit("extractor")

    refuse(audit)
    await audit.flush()

    assert [r.getMessage() for r in audit_lines(caplog)] == ["authentication_failure"]


async def test_no_token_or_proof_appears_in_the_trail(
    gate: SecurityGate,
    store: MemoryStore,
    caplog: pytest.LogCaptureFixture,
    rsa_signing_key: SigningKey,
) -> None:
    caplog.set_level(logging.DEBUG)
    key = DpopKey()
    foreign = sign(rsa_signing_key, bound_claims(key, azp="viewer"))
    token = sign(rsa_signing_key, bound_claims(key))
    proof = key.proof("POST", A2A_URL, access_token=token, body=b"{}")
    requests = [
        ([f"DPoP {foreign}"], [proof], "client_not_allowed"),
        ([f"DPoP {token}"], [proof + "x"], "dpop_invalid_proof"),
        ([f"Bearer {token}"], [proof], "dpop_proof_missing"),
    ]

    for authorization, proofs, _ in requests:
        with pytest.raises(AuthError):
            await gate.admit(
                Arrival("POST", "/a2a", A2A_URL, authorization, proofs, b"{}")
            )
    await gate.audit.flush()

    formatter = JsonFormatter("extractor")
    trail = "\n".join(formatter.format(r) for r in caplog.records)
    trail += caplog.text + repr(store.events)
    assert [e.reason for e in store.events] == [r for *_, r in requests]
    for secret in (foreign, token, proof):
        for part in secret.split("."):
            assert part not in trail

"""RevocationList: what every replica knows is revoked, from the store at
start-up and from notices since, until the token would have expired anyway."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import pytest

import shared.auth.revocation as revocation_module
from shared.auth.revocation import RevocationList
from shared.auth.store import Revocation
from tests.shared.kit import Clock, MemoryStore

# The in-memory store reads the real clock, as PostgreSQL's now() would.
NOW = float(int(time.time()))


@pytest.fixture(autouse=True)
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock(NOW)
    monkeypatch.setattr(revocation_module, "time", fake)
    return fake


def test_revoked_token_is_known_by_its_jti(store: MemoryStore) -> None:
    revocations = RevocationList(store)

    revocations.add(Revocation("jti-1", NOW + 300))

    assert revocations.is_revoked("jti-1")
    assert not revocations.is_revoked("jti-2")


def test_token_without_jti_is_never_revoked(store: MemoryStore) -> None:
    revocations = RevocationList(store)
    revocations.add(Revocation("", NOW + 300))

    assert not revocations.is_revoked(None)


def test_revocation_ends_when_the_token_would_have_expired(
    store: MemoryStore, clock: Clock
) -> None:
    revocations = RevocationList(store)
    revocations.add(Revocation("jti-1", NOW + 300))

    clock.advance(300)

    assert not revocations.is_revoked("jti-1")


async def test_reload_reads_the_revocations_of_every_replica(
    store: MemoryStore,
) -> None:
    revocations = RevocationList(store)
    store.revoke("jti-1", expires_at=NOW + 300)

    await revocations.reload()

    assert revocations.is_revoked("jti-1")


@dataclass
class SlowStore(MemoryStore):
    """Answers ``revocations`` with a snapshot taken before it is released."""

    asked: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)

    async def revocations(self) -> list[Revocation]:
        snapshot = await super().revocations()
        self.asked.set()
        await self.release.wait()
        return snapshot


async def test_notice_received_during_a_reload_is_not_lost() -> None:
    # The listener hears of a revocation committed after the reload's query
    # read the table: the answer that comes back does not contain it.
    store = SlowStore()
    revocations = RevocationList(store)
    reload = asyncio.create_task(revocations.reload())
    await store.asked.wait()

    revocations.add(Revocation("jti-new", NOW + 300))
    store.release.set()
    await reload

    assert revocations.is_revoked("jti-new")

"""ReplayGuard: a proof's jti is used once per service, across its replicas;
this replica's memory saves round trips but the shared store decides."""

from __future__ import annotations

import asyncio

import pytest

import shared.auth.replay as replay_module
from shared.auth.replay import ReplayGuard
from shared.errors import DependencyUnavailable, ReplayDetected
from tests.shared.kit import Clock, MemoryStore

NOW = 1_700_000_000.0
EXPIRES = NOW + 65


@pytest.fixture(autouse=True)
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock(NOW)
    monkeypatch.setattr(replay_module, "time", fake)
    return fake


async def replayed(guard: ReplayGuard, jti: str) -> ReplayDetected:
    with pytest.raises(ReplayDetected) as caught:
        await guard.claim(jti, EXPIRES)
    return caught.value


async def test_first_use_is_claimed_in_the_store_until_the_proof_expires(
    store: MemoryStore,
) -> None:
    await ReplayGuard(store, "extractor").claim("proof-1", EXPIRES)

    assert store.claimed == {("extractor", "proof-1"): EXPIRES}


async def test_second_use_on_this_replica_is_refused_without_a_round_trip(
    store: MemoryStore,
) -> None:
    guard = ReplayGuard(store, "extractor")
    await guard.claim("proof-1", EXPIRES)

    error = await replayed(guard, "proof-1")

    assert (error.code, error.http_status, error.reason) == (
        -32004,
        401,
        "proof_replayed",
    )
    assert store.claim_attempts == 1


async def test_second_use_on_another_replica_is_refused_by_the_store(
    store: MemoryStore,
) -> None:
    await ReplayGuard(store, "extractor").claim("proof-1", EXPIRES)

    await replayed(ReplayGuard(store, "extractor"), "proof-1")


async def test_each_service_keeps_its_own_record(store: MemoryStore) -> None:
    # A jti is the caller's choice; one service's claim must not block another.
    await ReplayGuard(store, "extractor").claim("proof-1", EXPIRES)

    await ReplayGuard(store, "validator").claim("proof-1", EXPIRES)


class SlowStore(MemoryStore):
    """A store whose answer takes a round trip, as the database's does."""

    async def claim_proof(self, audience: str, jti: str, expires_at: float) -> bool:
        await asyncio.sleep(0)
        return await super().claim_proof(audience, jti, expires_at)


async def test_concurrent_copies_admit_one_for_one_round_trip() -> None:
    # Copies racing in while the first is still at the database are refused
    # here: a flood of one captured request costs the database one insert.
    store = SlowStore()
    guard = ReplayGuard(store, "extractor")

    outcomes = await asyncio.gather(
        *(guard.claim("proof-1", EXPIRES) for _ in range(5)), return_exceptions=True
    )

    assert outcomes.count(None) == 1
    assert all(isinstance(o, ReplayDetected) for o in outcomes if o is not None)
    assert store.claim_attempts == 1


async def test_proof_forgotten_by_this_replica_is_still_refused_by_the_store(
    store: MemoryStore, clock: Clock
) -> None:
    guard = ReplayGuard(store, "extractor")
    await guard.claim("proof-1", EXPIRES)
    clock.advance(66)  # past the proof's expiry: local memory lets it go

    await replayed(guard, "proof-1")

    assert store.claim_attempts == 2


async def test_local_memory_is_bounded_and_the_store_still_decides(
    monkeypatch: pytest.MonkeyPatch, store: MemoryStore
) -> None:
    monkeypatch.setattr(replay_module, "_MAX_LOCAL_ENTRIES", 3)
    guard = ReplayGuard(store, "extractor")
    for n in range(4):
        await guard.claim(f"proof-{n}", EXPIRES)

    await replayed(guard, "proof-0")

    # The oldest was dropped from memory, so the store was asked, and refused.
    assert store.claim_attempts == 5


async def test_store_outage_is_a_dependency_failure_not_a_replay(
    store: MemoryStore,
) -> None:
    store.down = True

    with pytest.raises(DependencyUnavailable) as caught:
        await ReplayGuard(store, "extractor").claim("proof-1", EXPIRES)

    assert caught.value.dependency == "database"

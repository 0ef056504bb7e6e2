"""Attacks on the sender constraint (DPoP, RFC 9449) at an agent: a stolen
token, bent proofs, replays on one replica and across two."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import asyncpg
import pytest

from services.launcher.mesh import LocalMesh
from shared.auth.dpop import b64url_sha256
from tests.helpers.evidence import (
    assert_nothing_ran,
    assert_refused,
    executed,
    security_events,
    task_and_document_rows,
)
from tests.helpers.forgery import ProofKey, private_jwk, unsigned
from tests.helpers.raw import (
    BEARER_CHALLENGE,
    DPOP_CHALLENGE,
    RawRequest,
    archive_params,
    bearer,
    dpop,
    new_correlation_id,
    public_url,
    rpc_body,
    send,
    unique_key,
    with_proof,
)
from tests.helpers.tokens import TokenForge

pytestmark = pytest.mark.integration

AGENT = "archivist"
ROLES = ["orchestrator"]
HMAC_SECRET = "a secret the attacker shares with nobody"


@dataclass
class Scene:
    """A legitimate caller's bound token and request, for an attack to bend."""

    mesh: LocalMesh
    forge: TokenForge
    holder: ProofKey
    token: str
    key: str
    body: bytes

    @property
    def url(self) -> str:
        return public_url(self.mesh, AGENT)

    def claims(self, **overrides: Any) -> dict[str, Any]:
        return self.holder.claims(
            "POST", self.url, token=self.token, body=self.body, **overrides
        )

    def proof(self, **overrides: Any) -> str:
        return self.holder.proof(self.claims(**overrides))

    def request(
        self,
        proof: str | list[str] | None,
        *,
        token: str | None = None,
        scheme: str = "DPoP",
    ) -> RawRequest:
        return dpop(AGENT, self.body, token or self.token, proof, scheme=scheme)


def _scene(mesh: LocalMesh, forge: TokenForge) -> Scene:
    holder = ProofKey()
    key = unique_key("dpop")
    return Scene(
        mesh,
        forge,
        holder,
        forge.bound(AGENT, ROLES, holder.dpop),
        key,
        rpc_body("archive_document", archive_params(key)),
    )


def _unbound_with_proof(s: Scene) -> RawRequest:
    token = s.forge.valid(AGENT, ROLES)
    return s.request(s.holder.proof(s.claims(ath=_ath(token))), token=token)


def _ath(token: str) -> str:
    return b64url_sha256(token.encode())


def _other_body(s: Scene) -> RawRequest:
    other = rpc_body("archive_document", archive_params(s.key))
    return s.request(s.holder.proof(s.claims(body_sha256=b64url_sha256(other))))


def _private_key_in_jwk(s: Scene) -> RawRequest:
    return s.request(s.holder.proof(s.claims(), jwk=private_jwk(s.holder.private)))


def _rs256_with_ec_jwk(s: Scene) -> RawRequest:
    return s.request(
        s.holder.proof(s.claims(), algorithm="RS256", key=s.forge.stranger)
    )


def _alg_none(s: Scene) -> RawRequest:
    header = {"alg": "none", "typ": "dpop+jwt", "jwk": s.holder.dpop.public_jwk}
    return s.request(unsigned(header, s.claims()).rsplit(".", 1)[0] + ".")


# One attack each: the request the attacker sends, and the reason it must fail.
ATTACKS: dict[str, tuple[Callable[[Scene], RawRequest], str]] = {
    "stolen bound token sent as Bearer, no proof": (
        lambda s: s.request(None, scheme="Bearer"),
        "dpop_proof_missing",
    ),
    "stolen bound token sent as Bearer with a proof": (
        lambda s: s.request(s.proof(), scheme="Bearer"),
        "dpop_proof_missing",
    ),
    "stolen bound token, DPoP scheme, no proof": (
        lambda s: s.request(None),
        "dpop_proof_missing",
    ),
    "stolen bound token with a proof by the thief's key": (
        lambda s: s.request(ProofKey().proof(s.claims())),
        "dpop_key_mismatch",
    ),
    "unbound token as Bearer to an agent": (
        lambda s: s.request(None, token=s.forge.valid(AGENT, ROLES), scheme="Bearer"),
        "dpop_required",
    ),
    "unbound token under the DPoP scheme": (
        _unbound_with_proof,
        "dpop_token_not_bound",
    ),
    "proof for another URL (the extractor's)": (
        lambda s: s.request(s.proof(htu=public_url(s.mesh, "extractor"))),
        "dpop_wrong_url",
    ),
    "proof for another method (GET)": (
        lambda s: s.request(s.proof(htm="GET")),
        "dpop_wrong_method",
    ),
    "stale proof (iat two minutes ago)": (
        lambda s: s.request(s.proof(iat=int(time.time()) - 120)),
        "dpop_stale_proof",
    ),
    "proof from the future (iat in a minute)": (
        lambda s: s.request(s.proof(iat=int(time.time()) + 60)),
        "dpop_not_yet_valid",
    ),
    "proof over one body, another sent": (_other_body, "dpop_body_mismatch"),
    "proof without a body hash": (
        lambda s: s.request(s.proof(body_sha256=None)),
        "dpop_body_mismatch",
    ),
    "proof whose ath is another token's": (
        lambda s: s.request(
            s.proof(ath=_ath(s.forge.bound(AGENT, ROLES, s.holder.dpop)))
        ),
        "dpop_token_mismatch",
    ),
    "proof without ath": (
        lambda s: s.request(s.proof(ath=None)),
        "dpop_token_mismatch",
    ),
    "proof with the private key in its jwk": (
        _private_key_in_jwk,
        "dpop_invalid_key",
    ),
    "proof without a jwk": (
        lambda s: s.request(s.holder.proof(s.claims(), jwk=None, kid="k1")),
        "dpop_invalid_key",
    ),
    "HS256 proof": (
        lambda s: s.request(
            s.holder.proof(
                s.claims(),
                algorithm="HS256",
                key=HMAC_SECRET,
            )
        ),
        "dpop_algorithm_not_allowed",
    ),
    "alg none proof": (_alg_none, "dpop_algorithm_not_allowed"),
    "RS256 proof naming an EC key": (_rs256_with_ec_jwk, "dpop_algorithm_not_allowed"),
    "proof typed JWT, not dpop+jwt": (
        lambda s: s.request(s.holder.proof(s.claims(), typ="JWT")),
        "dpop_invalid_proof",
    ),
    "proof without jti": (
        lambda s: s.request(s.proof(jti=None)),
        "dpop_invalid_proof",
    ),
    "proof whose jti holds a NUL": (
        lambda s: s.request(s.proof(jti="ab\x00cd")),
        "dpop_invalid_proof",
    ),
    "proof whose jti holds a lone surrogate": (
        lambda s: s.request(s.proof(jti="ab\ud800cd")),
        "dpop_invalid_proof",
    ),
    "proof with iat as a string": (
        lambda s: s.request(s.proof(iat=str(int(time.time())))),
        "dpop_invalid_proof",
    ),
    "two DPoP headers": (
        lambda s: s.request([s.proof(), s.proof()]),
        "malformed_token",
    ),
}


@pytest.mark.parametrize("attack", list(ATTACKS))
async def test_bent_proof_is_refused_with_401_and_nothing_runs(
    mesh: LocalMesh, forge: TokenForge, database: asyncpg.Connection, attack: str
) -> None:
    make, reason = ATTACKS[attack]
    scene = _scene(mesh, forge)
    request = make(scene)

    response = await send(mesh, request)

    challenge = DPOP_CHALLENGE if reason.startswith("dpop_") else BEARER_CHALLENGE
    body = assert_refused(
        response, status=401, code=-32001, reason=reason, challenge=challenge
    )
    assert body["id"] is None
    await assert_nothing_ran(
        mesh, database, AGENT, str(request.correlation_id), key=scene.key
    )


async def test_replayed_proof_on_the_same_replica_is_refused(
    mesh: LocalMesh, forge: TokenForge, database: asyncpg.Connection
) -> None:
    scene = _scene(mesh, forge)
    request = with_proof(mesh, AGENT, scene.body, scene.token, scene.holder.dpop)
    cid = str(request.correlation_id)

    first = await send(mesh, request)
    replay = await send(mesh, request)

    assert first.status_code == 200, first.text
    assert_refused(
        replay,
        status=401,
        code=-32004,
        reason="proof_replayed",
        challenge=DPOP_CHALLENGE,
    )
    assert executed(mesh, AGENT, cid) == 1
    assert await task_and_document_rows(database, scene.key) == 1


async def test_replay_under_a_new_correlation_id_runs_nothing(
    mesh: LocalMesh, forge: TokenForge, database: asyncpg.Connection
) -> None:
    """The proof does not cover the correlation header; changing it does not
    make a used proof new."""
    scene = _scene(mesh, forge)
    request = with_proof(mesh, AGENT, scene.body, scene.token, scene.holder.dpop)
    replay_cid = new_correlation_id()

    assert (await send(mesh, request)).status_code == 200
    replay = await send(mesh, request.with_correlation(replay_cid))

    assert_refused(
        replay,
        status=401,
        code=-32004,
        reason="proof_replayed",
        challenge=DPOP_CHALLENGE,
        correlation_id=replay_cid,
    )
    await assert_nothing_ran(mesh, database, AGENT, replay_cid)


@pytest.mark.parametrize(
    ("first", "second"), [("archivist", "archivist-2"), ("archivist-2", "archivist")]
)
async def test_replay_against_the_other_replica_is_refused(
    mesh: LocalMesh,
    forge: TokenForge,
    database: asyncpg.Connection,
    first: str,
    second: str,
) -> None:
    """Identical bytes and headers to one replica, then to the other behind
    the same public URL: the proof's single use holds across replicas."""
    scene = _scene(mesh, forge)
    made = with_proof(mesh, first, scene.body, scene.token, scene.holder.dpop)
    cid = str(made.correlation_id)

    accepted = await send(mesh, made)
    replay = await send(mesh, RawRequest(second, made.body, made.headers))

    assert accepted.status_code == 200, accepted.text
    assert_refused(
        replay,
        status=401,
        code=-32004,
        reason="proof_replayed",
        challenge=DPOP_CHALLENGE,
    )
    assert executed(mesh, first, cid) == 1
    assert executed(mesh, second, cid) == 0
    rows = await security_events(database, cid)
    assert [(r["event"], r["reason"]) for r in rows] == [
        ("replay_detected", "proof_replayed")
    ]


async def test_same_proof_raced_to_both_replicas_runs_once(
    mesh: LocalMesh, forge: TokenForge
) -> None:
    scene = _scene(mesh, forge)
    made = with_proof(mesh, AGENT, scene.body, scene.token, scene.holder.dpop)
    cid = str(made.correlation_id)

    responses = await asyncio.gather(
        send(mesh, made), send(mesh, RawRequest("archivist-2", made.body, made.headers))
    )

    assert sorted(r.status_code for r in responses) == [200, 401]
    refused = next(r for r in responses if r.status_code == 401)
    assert_refused(
        refused,
        status=401,
        code=-32004,
        reason="proof_replayed",
        challenge=DPOP_CHALLENGE,
    )
    assert executed(mesh, "archivist", cid) + executed(mesh, "archivist-2", cid) == 1


async def test_proof_for_the_host_the_attacker_sends_is_refused(
    mesh: LocalMesh, forge: TokenForge, database: asyncpg.Connection
) -> None:
    """The URL a proof must name is the configured public one, never one built
    from the request's Host header, which the caller chooses."""
    scene = _scene(mesh, forge)
    proof = scene.holder.proof(scene.claims(htu="https://evil.example/a2a"))
    made = scene.request(proof)
    request = RawRequest(AGENT, made.body, [*made.headers, ("Host", "evil.example")])

    response = await send(mesh, request)

    assert_refused(
        response,
        status=401,
        code=-32001,
        reason="dpop_wrong_url",
        challenge=DPOP_CHALLENGE,
    )
    await assert_nothing_ran(
        mesh, database, AGENT, str(request.correlation_id), key=scene.key
    )


async def test_stolen_bound_token_is_no_bearer_token_at_the_orchestrator(
    mesh: LocalMesh, forge: TokenForge, database: asyncpg.Connection
) -> None:
    """The orchestrator takes plain bearer tokens, but not a bound one without
    its proof: accepting bearer tokens is no downgrade for stolen bound ones."""
    holder = ProofKey()
    token = forge.bound("orchestrator", ["document-processor"], holder.dpop)
    key = unique_key("stolen-at-front")
    request = bearer(
        "orchestrator", rpc_body("process_document", {"s3_key": key}), token
    )

    response = await send(mesh, request)

    assert_refused(
        response,
        status=401,
        code=-32001,
        reason="dpop_proof_missing",
        challenge=DPOP_CHALLENGE,
    )
    await assert_nothing_ran(
        mesh, database, "orchestrator", str(request.correlation_id), key=key
    )

"""Fixtures of the attack suite; the mesh is the session's (tests/conftest.py)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from services.launcher.mesh import LocalMesh
from tests.helpers.forgery import Attacker, KeyServer, public_jwk
from tests.helpers.mesh import client_token


@pytest.fixture
def attacker() -> Iterator[Attacker]:
    key = rsa.generate_private_key(65537, 2048)
    kid = f"attacker-{uuid.uuid4().hex}"
    server = KeyServer({"keys": [public_jwk(key, kid) | {"alg": "RS256"}]})
    with server.running():
        yield Attacker(key, kid, server)


@pytest.fixture
async def admin_token(mesh: LocalMesh) -> str:
    """A real token of the realm's admin client, from the identity provider."""
    return await client_token(mesh, "mesh-admin")

"""SecretsManagerStore against a real moto endpoint; StaticSecretStore."""

from __future__ import annotations

from typing import Any

import pytest

import shared.secrets as secrets_module
from shared.errors import DependencyUnavailable
from shared.secrets import AwsEndpoint, SecretsManagerStore, StaticSecretStore
from tests.shared.kit import Clock

SECRET_ID = "a2a-mesh/clients/orchestrator"


@pytest.fixture
def manager(aws: AwsEndpoint) -> Any:
    client = aws.client("secretsmanager")
    client.create_secret(Name=SECRET_ID, SecretString="first-value")
    return client


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(secrets_module, "time", fake)
    return fake


async def test_secrets_get_reads_value_from_secrets_manager(
    aws: AwsEndpoint, manager: Any
) -> None:
    store = SecretsManagerStore(aws)

    assert await store.get(SECRET_ID) == "first-value"


async def test_secrets_second_get_is_served_from_cache(
    aws: AwsEndpoint, manager: Any
) -> None:
    store = SecretsManagerStore(aws)
    await store.get(SECRET_ID)
    manager.delete_secret(SecretId=SECRET_ID, ForceDeleteWithoutRecovery=True)

    assert await store.get(SECRET_ID) == "first-value"


async def test_secrets_refresh_forces_a_reread(aws: AwsEndpoint, manager: Any) -> None:
    store = SecretsManagerStore(aws)
    await store.get(SECRET_ID)
    manager.put_secret_value(SecretId=SECRET_ID, SecretString="rotated-value")

    store.refresh(SECRET_ID)

    assert await store.get(SECRET_ID) == "rotated-value"


async def test_secrets_cached_value_is_reread_after_ttl(
    aws: AwsEndpoint, manager: Any, clock: Clock
) -> None:
    store = SecretsManagerStore(aws, ttl_seconds=300)
    await store.get(SECRET_ID)
    manager.put_secret_value(SecretId=SECRET_ID, SecretString="rotated-value")

    clock.advance(299)
    assert await store.get(SECRET_ID) == "first-value"

    clock.advance(2)
    assert await store.get(SECRET_ID) == "rotated-value"


async def test_secrets_missing_secret_raises_dependency_unavailable(
    aws: AwsEndpoint,
) -> None:
    store = SecretsManagerStore(aws)

    with pytest.raises(DependencyUnavailable) as caught:
        await store.get("a2a-mesh/clients/nobody")

    assert caught.value.dependency == "secrets-manager"
    assert caught.value.code == -32013


async def test_secrets_unreachable_endpoint_raises_dependency_unavailable(
    closed_port_endpoint: AwsEndpoint,
) -> None:
    store = SecretsManagerStore(closed_port_endpoint)

    with pytest.raises(DependencyUnavailable) as caught:
        await store.get(SECRET_ID)

    assert caught.value.dependency == "secrets-manager"


async def test_secrets_binary_secret_raises_dependency_unavailable(
    aws: AwsEndpoint,
) -> None:
    aws.client("secretsmanager").create_secret(
        Name="a2a-mesh/binary", SecretBinary=b"\x00\x01"
    )
    store = SecretsManagerStore(aws)

    with pytest.raises(DependencyUnavailable) as caught:
        await store.get("a2a-mesh/binary")

    assert caught.value.dependency == "secrets-manager"


async def test_static_store_returns_known_secret() -> None:
    store = StaticSecretStore({SECRET_ID: "value"})

    assert await store.get(SECRET_ID) == "value"


async def test_static_store_unknown_secret_raises_dependency_unavailable() -> None:
    with pytest.raises(DependencyUnavailable) as caught:
        await StaticSecretStore({}).get(SECRET_ID)

    assert caught.value.dependency == "secrets-manager"

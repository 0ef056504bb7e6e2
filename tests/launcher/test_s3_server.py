"""The local S3 endpoint keeps its connections open and reads bodies whole."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest

from certs.authority import ensure_dev_certs
from services.launcher.aws import LOCAL_AWS_ENV, LOCAL_CREDENTIALS, aws_process
from services.launcher.ports import free_port
from shared.secrets import AwsEndpoint


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AwsEndpoint]:
    folder = tmp_path_factory.mktemp("s3")
    certs = ensure_dev_certs(folder / "certs", ["s3"])
    port = free_port()
    process = aws_process(
        port, certs.server("s3"), env=dict(LOCAL_AWS_ENV), log_dir=folder
    )
    process.start()
    try:
        process.wait_healthy(
            f"https://127.0.0.1:{port}/moto-api/",
            ca_file=certs.ca.cert_path,
            timeout=30,
        )
        yield AwsEndpoint(
            "eu-west-3",
            f"https://127.0.0.1:{port}",
            str(certs.ca.cert_path),
            credentials=LOCAL_CREDENTIALS,
        )
    finally:
        process.stop()


def test_many_calls_share_one_connection_and_keep_every_byte(
    endpoint: AwsEndpoint, connections: io.StringIO
) -> None:
    s3 = endpoint.client("s3")
    s3.create_bucket(
        Bucket="kept-connections",
        CreateBucketConfiguration={"LocationConstraint": "eu-west-3"},
    )

    bodies = {f"doc-{n}": bytes([n]) * (1000 + n) for n in range(20)}
    for key, body in bodies.items():
        s3.put_object(
            Bucket="kept-connections", Key=key, Body=body, ServerSideEncryption="AES256"
        )
    read = {
        key: s3.get_object(Bucket="kept-connections", Key=key)["Body"].read()
        for key in bodies
    }

    assert read == bodies
    log = connections.getvalue()
    # moto's own server closed every connection: each call reconnected.
    assert log.count("Resetting dropped connection") == 0
    assert log.count("Starting new HTTPS connection") <= 1


def test_secrets_manager_answers_on_the_same_endpoint(endpoint: AwsEndpoint) -> None:
    secrets = endpoint.client("secretsmanager")
    secrets.create_secret(Name="kept/secret", SecretString="value")

    assert secrets.get_secret_value(SecretId="kept/secret")["SecretString"] == "value"


@pytest.fixture
def connections() -> Iterator[io.StringIO]:
    """What urllib3 says about the connections it opens, during the test."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    pool_logger = logging.getLogger("urllib3.connectionpool")
    level = pool_logger.level
    pool_logger.addHandler(handler)
    pool_logger.setLevel(logging.DEBUG)
    try:
        yield stream
    finally:
        pool_logger.removeHandler(handler)
        pool_logger.setLevel(level)

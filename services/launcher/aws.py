"""The local S3 and Secrets Manager endpoint (moto's server, over TLS), seeded
with the bucket and the secrets the mesh reads."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from botocore.exceptions import ClientError

from certs.authority import CertPair
from services.launcher.processes import ManagedProcess, python_module
from shared.secrets import AwsEndpoint

# moto accepts any credentials; these only keep boto3 from looking elsewhere.
LOCAL_CREDENTIALS = ("local-mesh", "local-mesh")
LOCAL_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": LOCAL_CREDENTIALS[0],
    "AWS_SECRET_ACCESS_KEY": LOCAL_CREDENTIALS[1],
    "AWS_EC2_METADATA_DISABLED": "true",
}


def aws_process(
    port: int, cert: CertPair, *, env: Mapping[str, str], log_dir: Path
) -> ManagedProcess:
    argv = python_module(
        "services.launcher.s3_server",
        "-H",
        "127.0.0.1",
        "-p",
        str(port),
        "-c",
        str(cert.cert_path),
        "-k",
        str(cert.key_path),
    )
    return ManagedProcess("aws", argv, env=env, log_dir=log_dir)


def seed(endpoint: AwsEndpoint, bucket: str, secrets: Mapping[str, str]) -> None:
    """Create the bucket and put every secret (create or update)."""
    s3 = endpoint.client("s3")
    s3.create_bucket(
        Bucket=bucket,
        CreateBucketConfiguration={"LocationConstraint": endpoint.region},
    )

    manager = endpoint.client("secretsmanager")
    for secret_id, value in secrets.items():
        try:
            manager.create_secret(Name=secret_id, SecretString=value)
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ResourceExistsException":
                raise
            manager.put_secret_value(SecretId=secret_id, SecretString=value)

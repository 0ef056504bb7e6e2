"""DocumentStorage against a real moto S3 endpoint on the loopback."""

from __future__ import annotations

from typing import Any

import pytest

from shared.errors import DependencyUnavailable, DocumentNotFound
from shared.secrets import AwsEndpoint
from shared.settings import StorageSettings
from shared.storage import DocumentStorage, StoredObject

BUCKET = "a2a-mesh-documents-test"


@pytest.fixture
def s3(aws: AwsEndpoint) -> Any:
    client = aws.client("s3")
    client.create_bucket(
        Bucket=BUCKET,
        CreateBucketConfiguration={"LocationConstraint": aws.region},
    )
    return client


def storage(
    endpoint: AwsEndpoint, bucket: str = BUCKET, **options: Any
) -> DocumentStorage:
    return DocumentStorage(endpoint, StorageSettings(s3_bucket=bucket, **options))


async def test_storage_put_requests_server_side_encryption(
    aws: AwsEndpoint, s3: Any
) -> None:
    await storage(aws).put("uploads/a.pdf", b"%PDF-1.7", "application/pdf")

    head = s3.head_object(Bucket=BUCKET, Key="uploads/a.pdf")
    assert head["ServerSideEncryption"] == "AES256"
    assert head["ContentType"] == "application/pdf"


async def test_storage_put_with_kms_key_requests_sse_kms(
    aws: AwsEndpoint, s3: Any
) -> None:
    documents = storage(aws, s3_sse="aws:kms", s3_kms_key_id="alias/a2a-mesh")

    await documents.put("uploads/b.txt", b"hello", "text/plain")

    head = s3.head_object(Bucket=BUCKET, Key="uploads/b.txt")
    assert head["ServerSideEncryption"] == "aws:kms"
    assert head["SSEKMSKeyId"].endswith("alias/a2a-mesh")


async def test_storage_get_returns_bytes_and_content_type(
    aws: AwsEndpoint, s3: Any
) -> None:
    documents = storage(aws)
    await documents.put("uploads/c.csv", b"a,b\n1,2\n", "text/csv")

    stored = await documents.get("uploads/c.csv", max_bytes=1024)

    assert stored == StoredObject("uploads/c.csv", b"a,b\n1,2\n", "text/csv")


async def test_storage_get_reads_at_most_one_byte_past_the_limit(
    aws: AwsEndpoint, s3: Any
) -> None:
    s3.put_object(Bucket=BUCKET, Key="uploads/big.bin", Body=b"x" * 100)

    stored = await storage(aws).get("uploads/big.bin", max_bytes=10)

    assert stored.data == b"x" * 11


async def test_storage_get_missing_key_raises_document_not_found(
    aws: AwsEndpoint, s3: Any
) -> None:
    with pytest.raises(DocumentNotFound) as caught:
        await storage(aws).get("uploads/nothing.pdf", max_bytes=1024)

    assert caught.value.code == -32010
    assert caught.value.data == {
        "reason": "missing_object",
        "s3_key": "uploads/nothing.pdf",
    }


async def test_storage_get_missing_bucket_raises_dependency_unavailable(
    aws: AwsEndpoint,
) -> None:
    with pytest.raises(DependencyUnavailable) as caught:
        await storage(aws, "no-such-bucket").get("uploads/a.pdf", max_bytes=10)

    assert caught.value.dependency == "s3"
    assert caught.value.code == -32013


async def test_storage_put_missing_bucket_raises_dependency_unavailable(
    aws: AwsEndpoint,
) -> None:
    with pytest.raises(DependencyUnavailable) as caught:
        await storage(aws, "no-such-bucket").put("uploads/a.pdf", b"x", "text/plain")

    assert caught.value.dependency == "s3"


async def test_storage_check_existing_bucket_passes(aws: AwsEndpoint, s3: Any) -> None:
    await storage(aws).check()


async def test_storage_check_missing_bucket_raises_dependency_unavailable(
    aws: AwsEndpoint,
) -> None:
    with pytest.raises(DependencyUnavailable) as caught:
        await storage(aws, "no-such-bucket").check()

    assert caught.value.dependency == "s3"


@pytest.mark.parametrize("operation", ["put", "get", "check"])
async def test_storage_unreachable_endpoint_raises_dependency_unavailable(
    closed_port_endpoint: AwsEndpoint, operation: str
) -> None:
    documents = storage(closed_port_endpoint)

    with pytest.raises(DependencyUnavailable) as caught:
        if operation == "put":
            await documents.put("uploads/a.pdf", b"x", "text/plain")
        elif operation == "get":
            await documents.get("uploads/a.pdf", max_bytes=10)
        else:
            await documents.check()

    assert caught.value.dependency == "s3"


async def test_storage_discard_removes_the_object_and_tolerates_a_missing_one(
    aws: AwsEndpoint, s3: Any
) -> None:
    documents = storage(aws)
    await documents.put("uploads/orphan.txt", b"x", "text/plain")

    await documents.discard("uploads/orphan.txt")
    await documents.discard("uploads/orphan.txt")

    with pytest.raises(DocumentNotFound):
        await documents.get("uploads/orphan.txt", max_bytes=10)

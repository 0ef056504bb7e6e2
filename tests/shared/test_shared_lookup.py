"""Look-up parameters: the JSON schema of ``get_document`` says what its
validator checks, exactly one of ``document_id`` and ``s3_key``."""

from __future__ import annotations

from typing import Any

import pytest
from openapi_schema_validator import OAS31Validator
from pydantic import ValidationError

from shared.lookup import GetDocumentParams

DOCUMENT_ID = "5e1d0c3b-8a9f-4e2d-b1c0-7f6e5d4c3b2a"


@pytest.mark.parametrize(
    ("params", "valid"),
    [
        ({"document_id": DOCUMENT_ID}, True),
        ({"s3_key": "incoming/a.pdf"}, True),
        ({"document_id": DOCUMENT_ID, "s3_key": None}, True),
        ({"document_id": None, "s3_key": "a.pdf", "include_pages": True}, True),
        ({}, False),
        ({"include_pages": True}, False),
        ({"document_id": None, "s3_key": None}, False),
        ({"document_id": DOCUMENT_ID, "s3_key": "incoming/a.pdf"}, False),
    ],
)
def test_get_document_schema_and_validator_agree_on_exactly_one_key(
    params: dict[str, Any], valid: bool
) -> None:
    schema = GetDocumentParams.model_json_schema()
    schema_says = OAS31Validator(schema).is_valid(params)
    try:
        GetDocumentParams.model_validate(params)
        model_says = True
    except ValidationError:
        model_says = False

    assert (schema_says, model_says) == (valid, valid)

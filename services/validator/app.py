"""The validator: scores extracted data against the rules of its document type."""

from __future__ import annotations

import logging
from contextlib import AsyncExitStack
from typing import Any

from fastapi import FastAPI

from services.validator.rules import rules_for, validate
from services.validator.settings import ValidatorSettings
from shared.documents import DocumentType, Extraction
from shared.jsonrpc import Call, Method, Params
from shared.logging import log_event
from shared.runtime import Runtime
from shared.secrets import SecretStore
from shared.service import ServiceParts, create_service_app

logger = logging.getLogger(__name__)


class ValidateParams(Params):
    document_type: DocumentType
    extracted_data: Extraction


class RulesParams(Params):
    document_type: DocumentType


async def validate_document(params: ValidateParams, call: Call) -> Any:
    validation = validate(params.document_type, params.extracted_data)
    log_event(
        logger,
        "document.validated",
        s3_key=params.extracted_data.s3_key,
        document_type=params.document_type,
        score=validation.score,
    )
    return validation.model_dump(mode="json")


async def get_validation_rules(params: RulesParams, call: Call) -> Any:
    return {
        "document_type": params.document_type,
        "rules": [
            rule.model_dump(mode="json") for rule in rules_for(params.document_type)
        ],
    }


METHODS: list[Method[Any]] = [
    Method(
        "validate_document",
        ValidateParams,
        validate_document,
        "Score extracted data 0-100 against the rules of its document type, "
        "with a reason per rule.",
    ),
    Method(
        "get_validation_rules",
        RulesParams,
        get_validation_rules,
        "The rules and weights applied to a document type.",
    ),
]


def create_app(
    settings: ValidatorSettings, secrets: SecretStore | None = None
) -> FastAPI:
    async def build(runtime: Runtime, stack: AsyncExitStack) -> ServiceParts:
        return ServiceParts(methods=METHODS)

    return create_service_app(
        settings,
        description="Scores extracted documents against rules per document type.",
        build=build,
        secrets=secrets,
    )

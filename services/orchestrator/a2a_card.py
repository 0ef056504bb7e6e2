"""The orchestrator's A2A 1.0 agent card, built as the protocol's own message.

Built from the SDK's protobuf types, the card cannot carry a field the 1.0
definition does not know. It says how to reach the JSON-RPC binding, what the
orchestrator can do, and how callers authenticate: OAuth 2.0 client
credentials at the realm's token endpoint, plus a client certificate where
the load balancer in front requires one.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from a2a.types.a2a_pb2 import (
    AgentCapabilities,
    AgentCard,
    AgentInterface,
    AgentProvider,
    AgentSkill,
    ClientCredentialsOAuthFlow,
    MutualTlsSecurityScheme,
    OAuth2SecurityScheme,
    OAuthFlows,
    SecurityRequirement,
    SecurityScheme,
    StringList,
)

from services.orchestrator.settings import OrchestratorSettings
from services.orchestrator.upload import ACCEPTED_TYPES
from shared.auth.policy import Policy

PROTOCOL_VERSION = "1.0"
RPC_PATH = "/a2a/v1"
OAUTH_SCHEME = "keycloak"
MTLS_SCHEME = "client-certificate"
JSON = "application/json"
DOCUMENT_TYPES = sorted(set(ACCEPTED_TYPES.values()))


@dataclass(frozen=True)
class Skill:
    """A skill and the mesh method whose role grants it."""

    card: AgentSkill
    method: str


SKILLS = (
    Skill(
        AgentSkill(
            id="process-document",
            name="Process a document",
            description=(
                "Extract, validate and archive one document: a file part with "
                "its bytes or an s3:// URL of the mesh's bucket, or a data part "
                '{"s3_key": ...}. The task ends completed, with the archived '
                "document's id, type, score and key fields as a data artifact, "
                "or failed with a reason."
            ),
            tags=["documents", "extraction", "validation", "archiving"],
            examples=['{"s3_key": "incoming/invoice-2026-001.pdf"}'],
            input_modes=[*DOCUMENT_TYPES, JSON],
            output_modes=[JSON],
        ),
        method="process_document",
    ),
    Skill(
        AgentSkill(
            id="look-up-task",
            name="Look up a task",
            description=(
                "A task's state, stage and result: GetTask, ListTasks, or "
                "SubscribeToTask to follow it as it runs."
            ),
            tags=["tasks"],
            input_modes=[JSON],
            output_modes=[JSON],
        ),
        method="get_task_status",
    ),
    Skill(
        AgentSkill(
            id="search-documents",
            name="Search archived documents",
            description=(
                'Send a data part {"search": {"document_type": ..., "text": ..., '
                '"min_score": ..., "limit": ..., "offset": ...}}; the answer is '
                "a message with the matching documents as a data part."
            ),
            tags=["documents", "search"],
            examples=['{"search": {"document_type": "invoice", "min_score": 80}}'],
            input_modes=[JSON],
            output_modes=[JSON],
        ),
        method="search_documents",
    ),
)


def public_card(settings: OrchestratorSettings) -> AgentCard:
    """The card anyone may read at ``/.well-known/agent-card.json``."""
    base = settings.public_base_url
    card = AgentCard(
        name="a2a-mesh orchestrator",
        description=(
            "Takes documents (PDF, CSV, text) through extraction, validation and "
            "archiving, with a verified token on every hop."
        ),
        version=settings.version,
        provider=AgentProvider(organization="a2a-mesh", url=base),
        supported_interfaces=[
            AgentInterface(
                url=f"{base}{RPC_PATH}",
                protocol_binding="JSONRPC",
                protocol_version=PROTOCOL_VERSION,
            )
        ],
        capabilities=AgentCapabilities(
            streaming=True, push_notifications=False, extended_agent_card=True
        ),
        default_input_modes=[*DOCUMENT_TYPES, JSON],
        default_output_modes=[JSON],
        skills=[skill.card for skill in SKILLS],
    )
    _add_security(card, settings)
    return card


def card_for(
    settings: OrchestratorSettings, roles: Policy, caller_roles: Iterable[str]
) -> AgentCard:
    """The extended card: only the skills the caller's roles allow."""
    granted = list(caller_roles)
    card = public_card(settings)
    del card.skills[:]
    card.skills.extend(
        skill.card for skill in SKILLS if roles.allows(granted, skill.method)
    )
    return card


def _add_security(card: AgentCard, settings: OrchestratorSettings) -> None:
    card.security_schemes[OAUTH_SCHEME].CopyFrom(
        SecurityScheme(
            oauth2_security_scheme=OAuth2SecurityScheme(
                description=(
                    "Client-credentials tokens from the mesh realm; Bearer, or "
                    "DPoP-bound (RFC 9449) for clients the realm binds."
                ),
                flows=OAuthFlows(
                    client_credentials=ClientCredentialsOAuthFlow(
                        token_url=settings.issuer_token_endpoint,
                        scopes={"openid": "The client's own identity and roles"},
                    )
                ),
            )
        )
    )
    required = {OAUTH_SCHEME: StringList()}
    if settings.trust_alb_client_certificates:
        # The load balancer in front verifies a client certificate from the
        # mesh CA and passes it on: every caller needs one as well.
        card.security_schemes[MTLS_SCHEME].CopyFrom(
            SecurityScheme(
                mtls_security_scheme=MutualTlsSecurityScheme(
                    description="A client certificate from the mesh CA"
                )
            )
        )
        required[MTLS_SCHEME] = StringList()
    card.security_requirements.append(SecurityRequirement(schemes=required))

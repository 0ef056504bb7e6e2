"""Send a document to the mesh with the official A2A client, as any A2A
agent would, and print each event until the task ends.

    python examples/a2a_send.py https://localhost:8443 invoice.pdf \
        --client-id document-processor --secret-file secret.txt --ca-file ca.pem

Nothing here is the mesh's own code: the agent card says where to send and
how to get a token, and ``a2a-sdk`` does the rest.
"""

from __future__ import annotations

import argparse
import asyncio
import mimetypes
import ssl
import sys
import uuid
from pathlib import Path

import httpx
from a2a.client import (
    A2ACardResolver,
    AuthInterceptor,
    ClientConfig,
    ClientFactory,
    CredentialService,
)
from a2a.client.client import ClientCallContext
from a2a.helpers import new_raw_part
from a2a.types.a2a_pb2 import Message, Role, SendMessageRequest, TaskState
from google.protobuf.json_format import MessageToDict


class ClientCredentials(CredentialService):
    """A token for the card's OAuth 2.0 scheme, whatever its name."""

    def __init__(self, token: str) -> None:
        self.token = token

    async def get_credentials(
        self, security_scheme_name: str, context: ClientCallContext | None
    ) -> str | None:
        return self.token


async def send(args: argparse.Namespace, secret: str, document: bytes) -> int:
    tls = ssl.create_default_context(cafile=args.ca_file)
    async with httpx.AsyncClient(verify=tls, timeout=60) as http:
        card = await A2ACardResolver(http, args.url).get_agent_card()
        token_url = next(
            scheme.oauth2_security_scheme.flows.client_credentials.token_url
            for scheme in card.security_schemes.values()
            if scheme.HasField("oauth2_security_scheme")
        )
        granted = await http.post(
            token_url,
            data={"grant_type": "client_credentials"},
            auth=(args.client_id, secret),
        )
        granted.raise_for_status()

        client = ClientFactory(ClientConfig(httpx_client=http, streaming=True)).create(
            card,
            interceptors=[
                AuthInterceptor(ClientCredentials(granted.json()["access_token"]))
            ],
        )
        name = Path(args.file).name
        media_type = mimetypes.guess_type(name)[0] or "application/pdf"
        request = SendMessageRequest(
            message=Message(
                message_id=str(uuid.uuid4()),
                role=Role.ROLE_USER,
                parts=[new_raw_part(document, media_type, name)],
            )
        )
        final = TaskState.TASK_STATE_UNSPECIFIED
        async for event in client.send_message(request):
            kind = event.WhichOneof("payload")
            if kind == "task":
                print(
                    f"task {event.task.id}: {TaskState.Name(event.task.status.state)}"
                )
            elif kind == "status_update":
                final = event.status_update.status.state
                print(f"  {TaskState.Name(final)}")
            elif kind == "artifact_update":
                for part in event.artifact_update.artifact.parts:
                    print(f"  result {MessageToDict(part.data)}")
        return 0 if final == TaskState.TASK_STATE_COMPLETED else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url", help="the agent's base URL (its card is beneath)")
    parser.add_argument("file", help="a PDF, CSV or text document")
    parser.add_argument("--client-id", required=True)
    parser.add_argument("--secret-file", required=True)
    parser.add_argument("--ca-file", help="CA of the agent's certificate")
    args = parser.parse_args()
    secret = Path(args.secret_file).read_text().strip()
    return asyncio.run(send(args, secret, Path(args.file).read_bytes()))


if __name__ == "__main__":
    sys.exit(main())

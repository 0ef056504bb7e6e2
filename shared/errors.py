"""The mesh's exceptions, and the one table that maps them to JSON-RPC.

    MeshError
    ├── ParseError              -32700  malformed JSON
    ├── InvalidRequest          -32600  not a JSON-RPC 2.0 request
    ├── PayloadTooLarge         -32600  HTTP 413, body over the limit
    ├── MethodNotFound          -32601
    ├── InvalidParams           -32602  parameters do not match the schema
    ├── InternalError           -32603  our fault; detail goes to the log only
    ├── Unauthenticated         -32001  HTTP 401 + WWW-Authenticate
    ├── Forbidden               -32002  HTTP 403
    ├── RateLimited             -32003  HTTP 429 + Retry-After
    ├── ReplayDetected          -32004  HTTP 401
    ├── TokenRevoked            -32005  HTTP 401
    ├── DocumentNotFound        -32010  no object at that S3 key
    ├── DocumentRejected        -32011  empty, unsupported, encrypted, unreadable,
    │                                   too large or complex, too slow, crashed
    ├── TaskNotFound            -32012
    └── DependencyUnavailable   -32013  a downstream service or store failed

Every error carries a short client-facing message and optional ``data``; the
detail of an unexpected failure is logged, never sent to the caller.
"""

from __future__ import annotations

from typing import Any, ClassVar


class MeshError(Exception):
    """Base of every error the mesh reports to a caller."""

    code: ClassVar[int] = -32603
    http_status: ClassVar[int] = 200
    default_message: ClassVar[str] = "Internal error"

    def __init__(self, message: str | None = None, *, data: Any = None) -> None:
        self.message = message or self.default_message
        self.data = data
        super().__init__(self.message)

    def to_jsonrpc(self) -> dict[str, Any]:
        """The ``error`` member of a JSON-RPC response."""
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            error["data"] = self.data
        return error


class ParseError(MeshError):
    code = -32700
    http_status = 400
    default_message = "Parse error"


class InvalidRequest(MeshError):
    code = -32600
    http_status = 400
    default_message = "Invalid request"


class PayloadTooLarge(MeshError):
    code = -32600
    http_status = 413
    default_message = "Request body too large"

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message, data={"reason": "too_large"})


class MethodNotFound(MeshError):
    code = -32601
    default_message = "Method not found"


class InvalidParams(MeshError):
    code = -32602
    default_message = "Invalid params"


class InternalError(MeshError):
    code = -32603
    http_status = 500
    default_message = "Internal error"


class AuthError(MeshError):
    """A refusal by the authentication layer; ``reason`` is one of a fixed set."""

    def __init__(self, reason: str, message: str | None = None) -> None:
        super().__init__(message, data={"reason": reason})
        self.reason = reason


class Unauthenticated(AuthError):
    code = -32001
    http_status = 401
    default_message = "Unauthenticated"


class Forbidden(AuthError):
    code = -32002
    http_status = 403
    default_message = "Forbidden"


class RateLimited(AuthError):
    code = -32003
    http_status = 429
    default_message = "Rate limited"

    def __init__(
        self, reason: str, message: str | None = None, *, retry_after: int = 1
    ) -> None:
        super().__init__(reason, message)
        self.retry_after = retry_after
        self.data = {"reason": reason, "retry_after": retry_after}


class ReplayDetected(AuthError):
    code = -32004
    http_status = 401
    default_message = "Replay detected"


class TokenRevoked(AuthError):
    code = -32005
    http_status = 401
    default_message = "Token revoked"


class DocumentNotFound(MeshError):
    """No object at an S3 key, or no archived document with an id."""

    code = -32010
    default_message = "Document not found"

    def __init__(self, s3_key: str | None = None, *, document_id: str | None = None):
        if document_id is not None:
            message = f"No archived document '{document_id}'"
            data: dict[str, str | None] = {
                "reason": "missing_document",
                "document_id": document_id,
            }
        else:
            message = f"No document at '{s3_key}'"
            data = {"reason": "missing_object", "s3_key": s3_key}
        super().__init__(message, data=data)
        self.s3_key = s3_key
        self.document_id = document_id


class DocumentRejected(MeshError):
    """The document exists but cannot be processed; ``reason`` is machine-readable.

    Reasons: ``empty_document``, ``unsupported_type``, ``encrypted_pdf``,
    ``unreadable_pdf``, ``undecodable_text``, ``too_large``, ``too_complex``,
    ``extraction_timeout``, ``extraction_crashed``.
    """

    code = -32011
    default_message = "Document rejected"

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message, data={"reason": reason})
        self.reason = reason


class TaskNotFound(MeshError):
    code = -32012
    default_message = "Task not found"

    def __init__(self, task_id: str) -> None:
        super().__init__(f"No task '{task_id}'", data={"task_id": task_id})
        self.task_id = task_id


class DependencyUnavailable(MeshError):
    """A downstream service or data store did not answer as it should."""

    code = -32013
    default_message = "A dependency is unavailable"

    def __init__(self, dependency: str, message: str | None = None) -> None:
        super().__init__(
            message or f"{dependency} is unavailable",
            data={"dependency": dependency},
        )
        self.dependency = dependency


class RemoteError(MeshError):
    """A JSON-RPC error returned by another service, carried through unchanged."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message, data=data)
        self.remote_code = code

    def to_jsonrpc(self) -> dict[str, Any]:
        error = super().to_jsonrpc()
        error["code"] = self.remote_code
        return error


ERROR_TABLE: dict[type[MeshError], tuple[int, int]] = {
    cls: (cls.code, cls.http_status)
    for cls in (
        ParseError,
        InvalidRequest,
        PayloadTooLarge,
        MethodNotFound,
        InvalidParams,
        InternalError,
        Unauthenticated,
        Forbidden,
        RateLimited,
        ReplayDetected,
        TokenRevoked,
        DocumentNotFound,
        DocumentRejected,
        TaskNotFound,
        DependencyUnavailable,
    )
}
"""Each error class with its JSON-RPC code and HTTP status, for docs and tests."""

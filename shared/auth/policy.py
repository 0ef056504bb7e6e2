"""The security policy: roles, callers, token rules, rate limits and input
limits, all from one TOML file that is checked completely at start-up.

A mistake in the file stops the service with every problem named by its
place in the file (``rate_limit.roles.viewer: Input should be greater than
0``), rather than a half-applied policy.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Mapping
from importlib import resources
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationError

WILDCARD = "*"
DEFAULT_KEY = "default"

# Checked by the schema, so that a mistake is named by its key in the file.
_Positive = Annotated[int, Field(gt=0)]


class PolicyError(ValueError):
    """The policy file cannot be used; the message names every problem."""


class Policy:
    """The role table. Deny by default; a role grants the methods it lists,
    ``*`` grants all."""

    def __init__(self, grants: Mapping[str, Iterable[str]]) -> None:
        self._grants = {role: frozenset(methods) for role, methods in grants.items()}

    @classmethod
    def load(cls, path: Path | None = None) -> Policy:
        """The role table of a policy file (the shipped one without a path)."""
        return SecurityPolicy.load(path).roles

    def allows(self, roles: Iterable[str], method: str) -> bool:
        for role in roles:
            granted = self._grants.get(role, frozenset())
            if method in granted or WILDCARD in granted:
                return True
        return False

    def granting(self, method: str) -> list[str]:
        """The roles that may call ``method``, by name: what a description of
        the API tells a caller."""
        return sorted(role for role in self._grants if self.allows([role], method))


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class TokenRules(_Section):
    leeway_seconds: int = Field(30, ge=0, le=300)
    """Clock skew allowed on ``exp``, ``nbf`` and ``iat``."""
    max_lifetime_seconds: int = Field(3600, gt=0)
    """A token valid for longer than this (``exp - iat``) is refused."""
    proof_max_age_seconds: int = Field(60, gt=0, le=600)
    """How old a DPoP proof may be; its ``jti`` is remembered this long."""


class RateLimit(_Section):
    requests_per_minute: int = Field(300, gt=0)
    roles: dict[str, _Positive] = Field(default_factory=dict)
    """Per-role overrides; a caller with several roles gets the highest."""

    def limit_for(self, roles: Iterable[str]) -> int:
        overrides = [self.roles[role] for role in roles if role in self.roles]
        return max(overrides, default=self.requests_per_minute)


class InputLimits(_Section):
    max_body_bytes: dict[str, _Positive] = Field(
        default_factory=lambda: {DEFAULT_KEY: 1 << 20}
    )
    """Per service, with a ``default``."""
    max_json_depth: int = Field(32, gt=0, le=256)
    max_upload_bytes: int = Field(25 << 20, gt=0)

    def body_bytes_for(self, service: str) -> int:
        return self.max_body_bytes.get(service, self.max_body_bytes[DEFAULT_KEY])


class _PolicyFile(_Section):
    roles: dict[str, list[str]]
    callers: dict[str, list[str]] = Field(default_factory=dict)
    tokens: TokenRules = TokenRules()
    rate_limit: RateLimit = RateLimit()
    limits: InputLimits = InputLimits()


class SecurityPolicy:
    """Everything the security stack enforces that is not a secret or a URL."""

    def __init__(self, parsed: _PolicyFile) -> None:
        self.roles = Policy(parsed.roles)
        self.callers = {svc: frozenset(ids) for svc, ids in parsed.callers.items()}
        self.tokens = parsed.tokens
        self.rate_limit = parsed.rate_limit
        self.limits = parsed.limits

    @classmethod
    def load(cls, path: Path | None = None) -> SecurityPolicy:
        """Read and check the file; without a path, the one shipped with the mesh."""
        if path is None:
            where = "policy.toml"
            text = resources.files("shared.auth").joinpath("policy.toml").read_text()
        else:
            where = str(path)
            try:
                text = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise PolicyError(f"{where}: cannot be read ({exc})") from exc
        return cls.parse(text, where)

    @classmethod
    def parse(cls, text: str, where: str = "policy") -> SecurityPolicy:
        try:
            raw = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise PolicyError(f"{where}: not valid TOML ({exc})") from exc
        try:
            parsed = _PolicyFile.model_validate(raw)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in error['loc'])}: {error['msg']}"
                for error in exc.errors(include_url=False)
            )
            raise PolicyError(f"{where}: {problems}") from None

        if DEFAULT_KEY not in parsed.limits.max_body_bytes:
            raise PolicyError(f"{where}: limits.max_body_bytes needs a 'default'")
        return cls(parsed)

    def allowed_callers(self, service: str) -> frozenset[str] | None:
        """The client ids (``azp``) that may call ``service``; None: any client."""
        return self.callers.get(service)

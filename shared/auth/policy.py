"""The role table: which realm roles may call which methods, from one file."""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Mapping
from importlib import resources
from pathlib import Path

WILDCARD = "*"


class Policy:
    """Deny by default; a role grants the methods it lists, ``*`` grants all."""

    def __init__(self, grants: Mapping[str, Iterable[str]]) -> None:
        self._grants = {role: frozenset(methods) for role, methods in grants.items()}

    @classmethod
    def load(cls, path: Path | None = None) -> Policy:
        """Read the policy file; without a path, the one shipped with the mesh."""
        if path is None:
            text = resources.files("shared.auth").joinpath("policy.toml").read_text()
        else:
            text = path.read_text(encoding="utf-8")

        roles = tomllib.loads(text).get("roles")
        if not isinstance(roles, dict) or not all(
            isinstance(m, list) and all(isinstance(x, str) for x in m)
            for m in roles.values()
        ):
            raise ValueError("policy file needs a [roles] table of method lists")
        return cls(roles)

    def allows(self, roles: Iterable[str], method: str) -> bool:
        for role in roles:
            granted = self._grants.get(role, frozenset())
            if method in granted or WILDCARD in granted:
                return True
        return False

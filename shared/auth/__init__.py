"""Who is calling, and may they: token verification, roles, service tokens."""

from shared.auth.principal import Principal

__all__ = ["Principal"]

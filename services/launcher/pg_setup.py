"""What a PostgreSQL cluster needs from the host before it can start.

The folder holding the server programs, the unprivileged account that runs the
server when we are root, and the SCRAM verifier stored in place of a password.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import pwd
import secrets
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from services.launcher.errors import PrerequisiteMissing

PROGRAMS = ("initdb", "pg_ctl", "postgres")
VERSIONED_ROOT = Path("/usr/lib/postgresql")
MISSING_MESSAGE = (
    "PostgreSQL server binaries (initdb, pg_ctl) were not found. Install "
    "PostgreSQL 15 (Debian: apt-get install postgresql-15) or set MESH_PG_BIN "
    "to their folder."
)


@dataclass(frozen=True)
class ServerAccount:
    """The unprivileged account that runs the server when we are root."""

    name: str
    uid: int
    gid: int
    groups: tuple[int, ...]


def find_postgres_bin(
    environ: Mapping[str, str] | None = None,
    *,
    versioned_root: Path = VERSIONED_ROOT,
) -> Path:
    """The folder holding initdb, pg_ctl and postgres.

    Looked up in ``MESH_PG_BIN``, then ``PATH``, then the newest
    ``/usr/lib/postgresql/<version>/bin``.
    """
    env = os.environ if environ is None else environ

    configured = env.get("MESH_PG_BIN")
    if configured:
        # A folder named on purpose must be right; falling back would hide it.
        if not _has_programs(Path(configured)):
            raise PrerequisiteMissing(
                f"MESH_PG_BIN={configured} does not contain "
                f"{', '.join(PROGRAMS)}. {MISSING_MESSAGE}",
                what="postgresql",
            )
        return Path(configured)

    found = shutil.which("initdb", path=env.get("PATH", ""))
    if found:
        for folder in (Path(found).parent, Path(found).resolve().parent):
            if _has_programs(folder):
                return folder

    for folder in _versioned_bins(versioned_root):
        if _has_programs(folder):
            return folder

    raise PrerequisiteMissing(MISSING_MESSAGE, what="postgresql")


def server_account() -> ServerAccount | None:
    """Who runs the server: ``None`` means ourselves (we are not root)."""
    if os.geteuid() != 0:
        return None

    for name in ("postgres", "nobody"):
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            continue
        groups = tuple(os.getgrouplist(name, entry.pw_gid))
        return ServerAccount(name, entry.pw_uid, entry.pw_gid, groups)

    raise PrerequisiteMissing(
        "PostgreSQL refuses to run as root and neither a 'postgres' nor a "
        "'nobody' account exists; create one or run as an ordinary user.",
        what="account",
    )


def scram_sha256_verifier(password: str, *, iterations: int = 4096) -> str:
    """The SCRAM-SHA-256 verifier PostgreSQL stores for ``password``.

    Sending the verifier instead of the password keeps the password out of
    the server's statement log if a statement fails.
    """
    # SASLprep leaves printable ASCII unchanged; other text would need it.
    if not password or not (password.isascii() and password.isprintable()):
        raise ValueError("the password must be non-empty printable ASCII")

    salt = secrets.token_bytes(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.digest(salted, b"Client Key", "sha256")
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.digest(salted, b"Server Key", "sha256")

    def b64(raw: bytes) -> str:
        return base64.b64encode(raw).decode("ascii")

    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


def _has_programs(folder: Path) -> bool:
    return all(
        (folder / name).is_file() and os.access(folder / name, os.X_OK)
        for name in PROGRAMS
    )


def _versioned_bins(root: Path) -> list[Path]:
    found: list[tuple[tuple[int, ...], Path]] = []
    for folder in root.glob("*/bin"):
        version = folder.parent.name.split(".")
        if all(part.isdigit() for part in version):
            found.append((tuple(int(part) for part in version), folder))
    return [folder for _, folder in sorted(found, reverse=True)]

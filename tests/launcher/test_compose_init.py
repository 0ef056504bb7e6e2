"""`a2a-mesh compose-init` keeps the passwords the databases started with."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from services.launcher.compose import init
from services.launcher.errors import LauncherError


def test_running_again_keeps_every_password_and_key(tmp_path: Path) -> None:
    init(tmp_path)
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}

    init(tmp_path)

    after = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    assert after == before


def test_a_lost_secrets_file_is_refused_while_passwords_are_in_use(
    tmp_path: Path,
) -> None:
    init(tmp_path)
    password = (tmp_path / "postgres" / "db-password").read_text()
    (tmp_path / ".authority" / "secrets.json").unlink()

    with pytest.raises(LauncherError, match="docker compose down -v"):
        init(tmp_path)

    # New passwords would lock PostgreSQL and Keycloak out: nothing changed.
    assert (tmp_path / "postgres" / "db-password").read_text() == password


def test_a_damaged_secrets_file_is_named(tmp_path: Path) -> None:
    init(tmp_path)
    stored = tmp_path / ".authority" / "secrets.json"
    stored.write_text(json.dumps({"passwords": {"db-password": 7}, "clients": {}}))

    with pytest.raises(LauncherError, match=r"secrets\.json is damaged"):
        init(tmp_path)


def test_a_planted_link_is_not_written_through(tmp_path: Path) -> None:
    init(tmp_path / "volume")
    victim = tmp_path / "victim.txt"
    victim.write_text("untouched")
    key = tmp_path / "volume" / "orchestrator" / "server.key"
    key.unlink()
    key.symlink_to(victim)

    with pytest.raises(LauncherError, match="cannot write"):
        init(tmp_path / "volume")

    assert victim.read_text() == "untouched"

"""A mistake in the policy file stops a service before it listens, naming
every problem by its place in the file."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

BROKEN_POLICY = """
[roles]
admin = ["*"]

[rate_limit]
requests_per_minute = 0

[limits]
max_json_depth = "deep"
"""


def test_service_with_a_broken_policy_file_stops_and_says_why(
    tmp_path: Path,
) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text(BROKEN_POLICY, encoding="utf-8")
    env = {
        key: value for key, value in os.environ.items() if not key.startswith("MESH_")
    } | {
        "MESH_ISSUER": "https://127.0.0.1:9/realms/a2a-mesh",
        "MESH_DB_CA_FILE": str(tmp_path / "ca.pem"),
        "MESH_POLICY_FILE": str(policy),
        "MESH_PORT": "0",
    }

    finished = subprocess.run(
        [sys.executable, "-m", "services.validator"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert finished.returncode == 2
    last_line = finished.stderr.strip().splitlines()[-1]
    assert last_line.startswith(f"validator: {policy}: ")
    assert "rate_limit.requests_per_minute: Input should be greater than 0" in last_line
    assert "limits.max_json_depth: Input should be a valid integer" in last_line

"""The ``a2a-mesh`` command as a user runs it: demo, up, and a missing prerequisite."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from services.launcher.caller import MeshCaller
from tests.helpers.corpus import CORPUS

pytestmark = pytest.mark.integration

A2A_MESH = shutil.which("a2a-mesh") or str(Path(sys.executable).parent / "a2a-mesh")

# What ../shared/corpus/MANIFEST.md says each file must end as.
EXPECTED_FAILURES = {
    "libreoffice-writer-password.pdf": "encrypted",
    "empty.csv": "empty",
}
MAY_FAIL_UNREADABLE = {"facture_acme_dec2025.pdf"}


def test_demo_processes_the_corpus_as_the_manifest_says() -> None:
    run = subprocess.run(
        [A2A_MESH, "demo", "--json", str(CORPUS)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )

    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(run.stdout)
    outcomes = {row["file"]: row for row in report["documents"]}
    assert len(outcomes) == 27
    for name, row in outcomes.items():
        if name in EXPECTED_FAILURES:
            assert row["status"] == "failed", row
            assert EXPECTED_FAILURES[name] in row["reason"].lower()
        elif name in MAY_FAIL_UNREADABLE and row["status"] == "failed":
            assert "unreadable" in row["reason"].lower()
        else:
            assert row["status"] == "completed", row
            assert 0 <= row["score"] <= 100
    assert report["summary"]["documents"] == 27
    assert "lost" not in report["summary"]


def test_demo_without_paths_processes_the_bundled_samples() -> None:
    run = subprocess.run(
        [A2A_MESH, "demo"], capture_output=True, text=True, timeout=300, check=False
    )

    assert run.returncode == 0, run.stderr[-3000:]
    assert re.search(
        r"^sample_invoice\.pdf\s+completed\s+invoice\s+\d+", run.stdout, re.M
    )
    assert re.search(r"^libreoffice-writer-password\.pdf\s+failed", run.stdout, re.M)
    assert "documents 7" in run.stdout


def test_demo_keep_names_both_folders_it_leaves_behind() -> None:
    run = subprocess.run(
        [A2A_MESH, "demo", "--keep"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )

    assert run.returncode == 0, run.stderr[-3000:]
    kept = re.search(
        r"run folder kept: (\S+); PostgreSQL data kept: (\S+)",
        run.stdout + run.stderr,
    )
    assert kept is not None
    folders = [Path(kept[1]), Path(kept[2])]
    try:
        assert all(folder.is_dir() for folder in folders)
        assert (folders[1] / "data").is_dir()
    finally:
        for folder in folders:
            shutil.rmtree(folder, ignore_errors=True)


def test_missing_postgres_binaries_give_a_clear_message() -> None:
    env = {**os.environ, "MESH_PG_BIN": "/nonexistent/postgres/bin"}

    run = subprocess.run(
        [A2A_MESH, "demo"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )

    assert run.returncode == 2
    assert "PostgreSQL server binaries" in run.stderr
    assert "Traceback" not in run.stderr


def test_demo_of_a_missing_path_is_a_clear_error() -> None:
    run = subprocess.run(
        [A2A_MESH, "demo", "/nonexistent/file.pdf"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert run.returncode == 2
    assert "No such file or folder" in run.stderr
    assert "Traceback" not in run.stderr


def test_up_serves_until_interrupted_and_then_stops_everything() -> None:
    with subprocess.Popen(
        [A2A_MESH, "up"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as process:
        orchestrator = _interact_then_interrupt(process)

    assert process.returncode == 130
    port = int(orchestrator.rsplit(":", 1)[1])
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5).close()


def _interact_then_interrupt(process: subprocess.Popen[str]) -> str:
    """Use the running mesh as its printed instructions say; then Ctrl-C."""
    try:
        printed = _read_until(process, "client secrets", seconds=120)
        orchestrator = _field(printed, "orchestrator")
        credentials = Path(_field(printed, "client secrets"))

        assert oct(credentials.stat().st_mode & 0o777) == "0o600"
        task = asyncio.run(
            _upload_and_wait(
                MeshCaller(
                    orchestrator,
                    token_url=_field(printed, "token endpoint"),
                    client_id="document-processor",
                    client_secret=_credential(credentials, "DOCUMENT_PROCESSOR_SECRET"),
                    ca_file=Path(_field(printed, "CA certificate")),
                ),
                CORPUS / "txt" / "sample_invoice.txt",
            )
        )
        assert task["status"] == "completed"
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=60)
    return orchestrator


async def _upload_and_wait(caller: MeshCaller, path: Path) -> dict[str, Any]:
    async with caller:
        response = await caller.upload(path)
        return await caller.wait(response.json()["task_id"])


def _read_until(process: subprocess.Popen[str], marker: str, *, seconds: float) -> str:
    assert process.stdout is not None
    deadline = time.monotonic() + seconds
    lines: list[str] = []
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line and process.poll() is not None:
            break
        lines.append(line)
        if marker in line:
            return "".join(lines)
    stderr = process.stderr.read() if process.stderr else ""
    raise AssertionError(f"no '{marker}' in output: {''.join(lines)}\n{stderr}")


def _field(printed: str, label: str) -> str:
    match = re.search(rf"^\s+{re.escape(label)}\s+(\S+)$", printed, re.M)
    assert match, f"no {label} in {printed}"
    return match.group(1)


def _credential(path: Path, name: str) -> str:
    for line in path.read_text().splitlines():
        key, _, value = line.partition("=")
        if key == name:
            return value
    raise AssertionError(f"{name} not in {path}")

"""The README's A2A example runs against the mesh as written."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from services.launcher.mesh import LocalMesh
from tests.helpers.corpus import corpus_file

pytestmark = pytest.mark.integration

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "a2a_send.py"


def test_the_example_sends_a_document_and_follows_it_to_its_result(
    mesh: LocalMesh, tmp_path: Path
) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text(mesh.client_secrets["document-processor"])

    sent = subprocess.run(
        [
            sys.executable,
            str(EXAMPLE),
            mesh.url("orchestrator"),
            str(corpus_file("pdf/sample_invoice.pdf")),
            "--client-id",
            "document-processor",
            "--secret-file",
            str(secret),
            "--ca-file",
            str(mesh.ca_file),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert sent.returncode == 0, sent.stderr[-2000:]
    lines = sent.stdout.splitlines()
    assert lines[0].endswith("TASK_STATE_SUBMITTED")
    assert "  TASK_STATE_WORKING" in lines
    assert lines[-1] == "  TASK_STATE_COMPLETED"
    assert any("'document_type': 'invoice'" in line for line in lines)

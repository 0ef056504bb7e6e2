"""The shared document corpus that lives beside the repository."""

from __future__ import annotations

from pathlib import Path

CORPUS = Path(__file__).resolve().parents[2].parent / "shared" / "corpus"


def corpus_file(relative: str) -> Path:
    path = CORPUS / relative
    if not path.is_file():
        raise FileNotFoundError(f"corpus file missing: {path}")
    return path

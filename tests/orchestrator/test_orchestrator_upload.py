"""Upload names: safe keys that keep their extension, clear refusals."""

from __future__ import annotations

import io
import re

import pytest
from starlette.datastructures import Headers, UploadFile

from services.orchestrator.upload import content_type_of, object_key
from shared.errors import DocumentRejected, InvalidParams

KEY = re.compile(r"uploads/\d{4}/\d{2}/\d{2}/[0-9a-f]{32}-(?P<name>.+)")


def _name_in_key(file_name: str) -> str:
    match = KEY.fullmatch(object_key("uploads/", file_name))
    assert match, file_name
    return match["name"]


@pytest.mark.parametrize(
    ("file_name", "stored"),
    [
        ("invoice.pdf", "invoice.pdf"),
        ("../../etc/passwd.txt", "passwd.txt"),
        ("Relevé de compte.CSV", "Relev_de_compte.csv"),
        ("é" * 300 + ".pdf", "document.pdf"),
        ("a" * 300 + ".pdf", "a" * 120 + ".pdf"),
        (".pdf", "document.pdf"),
        ("no-extension", "no-extension"),
    ],
)
def test_object_key_is_safe_and_keeps_the_extension(
    file_name: str, stored: str
) -> None:
    assert _name_in_key(file_name) == stored


def _upload(name: str, content_type: str) -> UploadFile:
    return UploadFile(
        io.BytesIO(b"x"), filename=name, headers=Headers({"content-type": content_type})
    )


def test_content_type_comes_from_the_extension() -> None:
    assert (
        content_type_of(_upload("r.TSV", "text/plain")) == "text/tab-separated-values"
    )


def test_bare_extension_is_read_as_the_extension() -> None:
    assert content_type_of(_upload(".pdf", "application/pdf")) == "application/pdf"


def test_unsupported_extension_is_rejected_by_name() -> None:
    with pytest.raises(DocumentRejected) as raised:
        content_type_of(_upload("payload.exe", "application/octet-stream"))

    assert raised.value.reason == "unsupported_type"
    assert "'.exe'" in raised.value.message


def test_declared_type_contradicting_the_extension_is_invalid() -> None:
    with pytest.raises(InvalidParams):
        content_type_of(_upload("invoice.pdf", "image/png"))


@pytest.mark.parametrize(
    ("name", "declared"),
    [
        ("notes.txt", "application/pdf"),
        ("invoice.pdf", "text/plain"),
        ("table.csv", "application/pdf"),
        ("notes.txt", "text/csv"),
    ],
)
def test_declared_type_of_another_format_is_invalid(name: str, declared: str) -> None:
    with pytest.raises(InvalidParams):
        content_type_of(_upload(name, declared))


@pytest.mark.parametrize(
    ("name", "declared"),
    [
        ("invoice.pdf", "application/octet-stream"),
        ("invoice.pdf", ""),
        ("table.csv", "application/vnd.ms-excel"),
        ("table.csv", "text/plain"),
        ("notes.txt", "text/plain; charset=utf-8"),
    ],
)
def test_generic_or_usual_declarations_are_accepted(name: str, declared: str) -> None:
    assert content_type_of(_upload(name, declared))

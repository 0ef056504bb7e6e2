"""The README's table of settings is complete and agrees with the code."""

from __future__ import annotations

from tests.deploy.settings_table import ROOT, expected_rows, readme_rows

HEADING = "### Every setting"


def table() -> list[tuple[str, str, str, str]]:
    return readme_rows((ROOT / "README.md").read_text(), HEADING)


def test_every_setting_is_listed_once_with_its_default_and_readers() -> None:
    listed = [(name, default, readers) for name, default, readers, _ in table()]

    assert listed == list(expected_rows())


def test_every_setting_says_what_it_means() -> None:
    assert all(meaning for *_, meaning in table())

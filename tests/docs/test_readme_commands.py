"""The README's quick start is what CI runs."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _quick_start() -> list[str]:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    # The text under the heading, up to the next heading of any level.
    section = re.split(r"\n#{2,} ", readme.split("## Quick start", 1)[1], maxsplit=1)[0]
    return re.findall(r"```sh\n(.+?)\n```", section, re.S)


def test_quick_start_is_two_commands_demo_then_tests() -> None:
    demo, tests = _quick_start()

    assert "\n" not in demo and "\n" not in tests
    assert demo.endswith("a2a-mesh demo")
    assert tests.endswith("pytest")


def test_ci_runs_the_readme_test_command_word_for_word() -> None:
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    _, tests = _quick_start()

    commands = [line for line in ci.splitlines() if line and not line.startswith("#")]
    assert commands[-1] == tests

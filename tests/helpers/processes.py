"""Waiting for processes the test does not own (a pool's workers)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from pathlib import Path


def gone(pid: int) -> bool:
    """Whether ``pid`` has exited (a zombie waiting to be reaped counts)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return True
    # The state follows the command name, which is in parentheses.
    return stat.rsplit(")", 1)[1].split()[0] in {"Z", "X"}


def all_gone(pids: Iterable[int]) -> bool:
    return all(gone(pid) for pid in pids)


async def eventually(condition: Callable[[], bool], within: float = 10.0) -> bool:
    """Whether ``condition`` holds within ``within`` seconds (polled)."""
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True


def eventually_sync(condition: Callable[[], bool], within: float = 10.0) -> bool:
    """``eventually`` for code outside an event loop."""
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def parent_of(pid: int) -> int | None:
    """The parent of ``pid``, or None once it has exited."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return int(stat.rsplit(")", 1)[1].split()[1])


def children_of(pid: int) -> set[int]:
    """The live processes whose parent is ``pid``."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and parent_of(int(entry.name)) == pid:
            child = int(entry.name)
            if not gone(child):
                found.add(child)
    return found


def descendants_of(pid: int) -> set[int]:
    """The live processes below ``pid``, at any depth."""
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        below = set().union(*(children_of(each) for each in frontier)) - found
        found |= below
        frontier = below
    return found

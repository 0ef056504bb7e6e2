"""What the extraction pool costs: latency per document, worker start, memory.

Run by hand: ``.venv/bin/python benchmarks/extraction_pool.py`` (``--help``).

1. In process, on one document (default: the corpus's one-page sample
   invoice): extraction in a thread, as the extractor did before the pool
   (``asyncio.to_thread(extract)`` and ``model_dump``), against the pool
   (the bytes to a worker, the result back as JSON), alternated call by call.
2. Worker start: the first (which starts the forkserver) and replacements of
   killed workers, as the pool logs them.
3. With ``--mesh``: the whole local mesh, the corpus processed through it,
   then the resident memory of the extractor, its forkserver, resource
   tracker and workers: RSS, and PSS (shared pages split between the
   processes that share them, so that the sum means something).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import statistics
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from services.extractor.extraction import extract
from services.extractor.pool import ExtractionPool, open_pool
from services.extractor.settings import ExtractorSettings
from services.launcher.caller import MeshCaller
from services.launcher.mesh import LocalMesh

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT.parent / "shared" / "corpus"
SAMPLE = CORPUS / "pdf" / "sample_invoice.pdf"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--document", type=Path, default=SAMPLE)
    parser.add_argument("--calls", type=int, default=200, help="per method")
    parser.add_argument("--replacements", type=int, default=10)
    parser.add_argument("--mesh", action="store_true", help="also measure memory")
    args = parser.parse_args()

    data = args.document.read_bytes()
    asyncio.run(
        measure_latency(args.document.name, data, args.calls, args.replacements)
    )
    if args.mesh:
        measure_memory()


def settings() -> ExtractorSettings:
    return ExtractorSettings(issuer="https://idp.invalid/realms/x", db_ca_file=ROOT)


async def measure_latency(
    name: str, data: bytes, calls: int, replacements: int
) -> None:
    starts = _StartTimes()
    # The pool's handle on each worker logs its start.
    logging.getLogger("services.extractor.handle").addHandler(starts)
    logging.getLogger("services.extractor.handle").setLevel(logging.INFO)

    async def in_thread() -> object:
        extraction = await asyncio.to_thread(extract, data, s3_key=name)
        return extraction.model_dump(mode="json")

    async with open_pool(settings()) as pool:

        async def in_pool() -> object:
            return await pool.extract(data, s3_key=name, content_type=None)

        for _ in range(5):  # warm both paths up
            await in_thread()
            await in_pool()
        thread_ms, pool_ms = [], []
        for _ in range(calls):
            thread_ms.append(await _timed(in_thread))
            pool_ms.append(await _timed(in_pool))

        await _replace_workers(pool, replacements)

    print(f"{name}, {len(data)} bytes, {calls} calls each, one at a time")
    print(f"  thread (before): {_summary(thread_ms)}")
    print(f"  pool (now):      {_summary(pool_ms)}")
    overhead = statistics.median(pool_ms) - statistics.median(thread_ms)
    print(f"  overhead at the median: {overhead:+.2f} ms")
    first, *later = starts.milliseconds
    print(f"worker start: first {first:.0f} ms (starts the forkserver)")
    if later:
        print(f"  replacements: {_summary(later)}")


async def _timed(call: Callable[[], Awaitable[object]]) -> float:
    began = time.perf_counter()
    await call()
    return (time.perf_counter() - began) * 1000


async def _replace_workers(pool: ExtractionPool, count: int) -> None:
    """Kill a worker ``count`` times; the readiness check replaces it."""
    workers = len(pool.pids)
    for _ in range(count):
        victim = pool.pids[0]
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while victim in pool.pids or pool.alive < workers:
            if time.monotonic() > deadline:
                raise RuntimeError("a killed worker was not replaced in 10 s")
            await pool.check()
            await asyncio.sleep(0.01)


class _StartTimes(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.milliseconds: list[float] = []

    def emit(self, record: logging.LogRecord) -> None:
        fields: dict[str, Any] = getattr(record, "mesh_fields", {})
        if record.getMessage() == "extraction.worker_started":
            self.milliseconds.append(float(fields["start_ms"]))


def _summary(values: list[float]) -> str:
    ordered = sorted(values)
    p90 = ordered[int(len(ordered) * 0.9) - 1]
    return (
        f"median {statistics.median(values):.2f} ms, p90 {p90:.2f} ms, "
        f"mean {statistics.fmean(values):.2f} ms"
    )


def measure_memory() -> None:
    async def process_corpus(caller: MeshCaller) -> int:
        files = [p for p in sorted(CORPUS.rglob("*")) if p.suffix != ".md"]
        uploads = [await caller.upload(p) for p in files if p.is_file()]
        tasks = [caller.wait(u.json()["task_id"]) for u in uploads]
        return len(await asyncio.gather(*tasks))

    with LocalMesh() as mesh:
        extractor = mesh.processes["extractor"].pid
        if extractor is None:
            raise RuntimeError("the extractor did not start")
        print(f"memory of the extractor (pid {extractor}), kB:")
        _print_memory("after start", extractor, descendants_of(extractor))

        async def run() -> int:
            async with mesh.caller("document-processor") as caller:
                return await process_corpus(caller)

        processed = asyncio.run(run())
        _print_memory(
            f"after {processed} corpus documents", extractor, descendants_of(extractor)
        )


def _print_memory(when: str, extractor: int, below: set[int]) -> None:
    print(f"  {when}:")
    total_rss = total_pss = 0
    for pid in [extractor, *sorted(below)]:
        rss, pss = _memory(pid)
        total_rss += rss
        total_pss += pss
        print(
            f"    {_role(pid, extractor):<16} pid {pid:<7} RSS {rss:>7}  PSS {pss:>7}"
        )
    print(f"    {'together':<28} RSS {total_rss:>7}  PSS {total_pss:>7}")


def descendants_of(pid: int) -> set[int]:
    """The processes below ``pid``, at any depth."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat[1])
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier}
        found |= frontier
    return found


def _memory(pid: int) -> tuple[int, int]:
    fields = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        name, value, *_ = line.split()
        fields[name.rstrip(":")] = int(value)
    return fields["Rss"], fields["Pss"]


def _role(pid: int, extractor: int) -> str:
    if pid == extractor:
        return "extractor"
    command = Path(f"/proc/{pid}/cmdline").read_bytes()
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    if b"resource_tracker" in command:
        return "resource tracker"
    if int(stat[1]) == extractor:
        return "forkserver"
    return "worker"


if __name__ == "__main__":
    main()

"""A pool of worker processes that parse documents, so that no document can
take the extractor down.

A thread cannot be stopped, has no memory limit of its own, and shares the
event loop's process; a worker process can be killed. Each document goes to
one idle worker (waiting at most ``extract_queue_seconds`` for one), runs
under a time limit and, inside the worker, an address-space limit. A worker
that runs out of time, out of memory, or dies is replaced; the document gets
a ``DocumentRejected`` whose reason says which:

    extraction_timeout   longer than ``extract_timeout_seconds``
    too_complex          more memory than ``extract_memory_mib``
    extraction_crashed   the worker died (a signal, a crash in C code)

Workers come from multiprocessing's forkserver, which is safe to use from a
process with threads (unlike fork) and forks each worker from a process that
has the extraction modules imported already, so a replacement costs a few
milliseconds (spawn would pay the imports every time).

The pool's side of one worker is :mod:`handle`, the worker's own loop
:mod:`worker`, the messages between them :mod:`frames`.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Final

from services.extractor import worker
from services.extractor.handle import (
    WorkerGone,
    WorkerHandle,
    WorkerStartFailed,
    describe_exit,
    join_or_kill,
    main_script_imports,
    signal_name,
    start_worker,
)
from services.extractor.settings import ExtractorSettings
from services.extractor.worker import ExtractionRequest, Job, WorkerConfig
from shared.errors import DependencyUnavailable, DocumentRejected, InternalError
from shared.logging import log_event

logger = logging.getLogger(__name__)

_MIB: Final = 1024 * 1024


class NoLiveWorker(RuntimeError):
    """Readiness: not one worker process is alive."""


class ExtractionPool:
    """Long-lived worker processes running :func:`worker.run_extraction`."""

    def __init__(
        self, settings: ExtractorSettings, *, job: Job = worker.run_extraction
    ) -> None:
        self._settings = settings
        self._config = WorkerConfig(
            job=job,
            memory_bytes=settings.extract_memory_mib * _MIB,
            service_name=settings.service_name,
            log_level=settings.log_level,
        )
        self._context = multiprocessing.get_context("forkserver")
        self._context.set_forkserver_preload(
            [worker.__name__, job.__module__, *main_script_imports()]
        )
        self._workers: set[WorkerHandle] = set()
        self._idle: asyncio.Queue[WorkerHandle] = asyncio.Queue()
        self._starting: set[asyncio.Task[None]] = set()
        self._closing = False

    @property
    def alive(self) -> int:
        """How many worker processes are running."""
        return sum(each.alive() for each in self._workers)

    @property
    def pids(self) -> list[int]:
        """The worker processes' ids (for tests and measurements)."""
        return [each.pid for each in self._workers if each.pid is not None]

    async def open(self) -> None:
        """Start every worker; raises ``WorkerStartFailed`` if one cannot."""
        for _ in range(self._settings.extract_workers):
            self._add(await start_worker(self._context, self._config))

    async def close(self) -> None:
        """Stop every worker: SIGTERM, then SIGKILL after a short wait."""
        self._closing = True
        # Replacements being started finish (or fail) within their timeout.
        await asyncio.gather(*self._starting, return_exceptions=True)
        workers, self._workers = self._workers, set()
        for each in workers:
            each.stop(signal.SIGTERM)
        await asyncio.to_thread(join_or_kill, [each.process for each in workers])
        log_event(logger, "extraction.pool_closed", workers=len(workers))

    async def extract(
        self, data: bytes, *, s3_key: str, content_type: str | None
    ) -> dict[str, Any]:
        """The document's extraction as plain data.

        Raises ``DocumentRejected`` (the extraction's own reasons, or
        ``extraction_timeout``, ``too_complex``, ``extraction_crashed``) and
        ``DependencyUnavailable`` when no worker is free in time.
        """
        request = ExtractionRequest(
            s3_key=s3_key,
            content_type=content_type,
            max_pdf_pages=self._settings.max_pdf_pages,
            max_text_chars=self._settings.max_text_chars,
            max_table_rows=self._settings.max_table_rows,
        )
        chosen = await self._acquire()
        try:
            async with asyncio.timeout(self._settings.extract_timeout_seconds):
                reply = await chosen.run(request, data)
        except TimeoutError:
            self._discard(chosen)
            log_event(
                logger,
                "extraction.timeout",
                level=logging.WARNING,
                s3_key=s3_key,
                pid=chosen.pid,
                limit_seconds=self._settings.extract_timeout_seconds,
            )
            raise self._timeout() from None
        except WorkerGone:
            raise await self._crashed(chosen, s3_key) from None
        except asyncio.CancelledError:
            # The caller went away (a shutdown): the work is not wanted.
            self._discard(chosen)
            log_event(logger, "extraction.cancelled", s3_key=s3_key, pid=chosen.pid)
            raise
        except BaseException:
            self._discard(chosen)
            raise

        return self._outcome(chosen, reply, s3_key)

    async def check(self) -> None:
        """Readiness: at least one worker alive; dead ones are replaced."""
        for dead in [each for each in self._workers if not each.alive()]:
            self._discard(dead)
        self._refill()
        if not self.alive:
            raise NoLiveWorker("no extraction worker is running")

    async def _acquire(self) -> WorkerHandle:
        if self._closing:
            raise _shutting_down()
        self._refill()
        try:
            async with asyncio.timeout(self._settings.extract_queue_seconds):
                while True:
                    candidate = await self._idle.get()
                    if candidate.ready():
                        candidate.busy = True
                        return candidate
                    # It died while idle (killed from outside): not this
                    # document's fault.
                    self._discard(candidate)
        except TimeoutError:
            log_event(
                logger,
                "extraction.queue_full",
                level=logging.WARNING,
                workers=self._settings.extract_workers,
                waited_seconds=self._settings.extract_queue_seconds,
            )
            raise DependencyUnavailable(
                "extractor", "all extraction workers are busy"
            ) from None

    def _outcome(
        self, chosen: WorkerHandle, reply: dict[str, Any], s3_key: str
    ) -> dict[str, Any]:
        outcome = reply.get("outcome")
        if outcome == "out_of_memory":
            # The worker exits by itself; make sure, and replace it.
            self._discard(chosen)
            log_event(
                logger,
                "extraction.out_of_memory",
                level=logging.WARNING,
                s3_key=s3_key,
                pid=chosen.pid,
                limit_mib=self._settings.extract_memory_mib,
            )
            raise DocumentRejected(
                "too_complex",
                "The document needs more memory than the extractor allows "
                f"({self._settings.extract_memory_mib} MiB) to be read",
            )

        self._release(chosen)
        if outcome == "extracted" and isinstance(reply.get("extraction"), dict):
            extraction: dict[str, Any] = reply["extraction"]
            return extraction
        reason, message = reply.get("reason"), reply.get("message")
        if outcome == "rejected" and isinstance(reason, str) and message:
            raise DocumentRejected(reason, str(message))

        # A bug in the extraction code (or a reply we do not know): the
        # caller gets a generic -32603, the log the worker's traceback.
        log_event(
            logger,
            "extraction.failed",
            level=logging.ERROR,
            s3_key=s3_key,
            pid=chosen.pid,
            error=reply.get("error", f"unknown outcome {outcome!r}"),
            worker_traceback=reply.get("traceback"),
        )
        raise InternalError()

    def _timeout(self) -> DocumentRejected:
        limit = self._settings.extract_timeout_seconds
        return DocumentRejected(
            "extraction_timeout",
            f"Reading the document took longer than {limit:g} seconds; it was stopped",
        )

    async def _crashed(
        self, chosen: WorkerHandle, s3_key: str
    ) -> DocumentRejected | DependencyUnavailable:
        # The exit code first: a replacement's start polls the dead worker too.
        try:
            code = await chosen.exit_code()
        finally:
            self._discard(chosen)
        if self._closing:
            return _shutting_down()
        log_event(
            logger,
            "extraction.crashed",
            level=logging.ERROR,
            s3_key=s3_key,
            pid=chosen.pid,
            exit_code=code,
            signal=signal_name(code),
        )
        return DocumentRejected(
            "extraction_crashed",
            "The process reading the document stopped abruptly "
            f"({describe_exit(code)}); the document may be malformed",
        )

    def _release(self, chosen: WorkerHandle) -> None:
        chosen.busy = False
        if chosen in self._workers:
            self._idle.put_nowait(chosen)

    def _discard(self, chosen: WorkerHandle) -> None:
        """Kill a worker that may be busy or broken, and start another."""
        if chosen not in self._workers:
            return
        self._workers.discard(chosen)
        chosen.stop(signal.SIGKILL)
        self._refill()

    def _refill(self) -> None:
        """Start workers for the slots that have none (never while closing)."""
        missing = self._settings.extract_workers - len(self._workers)
        for _ in range(missing - len(self._starting)):
            if self._closing:
                return
            task = asyncio.create_task(self._replace())
            self._starting.add(task)
            task.add_done_callback(self._starting.discard)

    async def _replace(self) -> None:
        try:
            started = await start_worker(self._context, self._config)
        except WorkerStartFailed as exc:
            # The slot stays empty; the next document or readiness check
            # tries again.
            log_event(
                logger,
                "extraction.worker_start_failed",
                level=logging.ERROR,
                error=str(exc),
            )
            return
        if self._closing:
            started.stop(signal.SIGKILL)
            await started.exit_code()
            return
        self._add(started)

    def _add(self, started: WorkerHandle) -> None:
        self._workers.add(started)
        self._idle.put_nowait(started)


@asynccontextmanager
async def open_pool(
    settings: ExtractorSettings, *, job: Job = worker.run_extraction
) -> AsyncIterator[ExtractionPool]:
    """A started pool, closed (every worker stopped) on exit."""
    pool = ExtractionPool(settings, job=job)
    try:
        await pool.open()
        yield pool
    finally:
        await pool.close()


def _shutting_down() -> DependencyUnavailable:
    return DependencyUnavailable("extractor", "the extractor is shutting down")

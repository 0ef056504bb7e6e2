"""Documents per second through two orchestrator replicas, end to end.

Run by hand: ``.venv/bin/python benchmarks/load.py`` (``--help`` for the
options). The script starts the whole local mesh with two orchestrator
replicas, security as the mesh always runs it (TLS on every hop, mutual TLS
to the agents, a JWT checked on every hop, DPoP between the services), then:

1. submits ``--documents`` copies of the one-page sample invoice, each under
   its own file name (so its own S3 key) and Idempotency-Key, round-robin over
   the replicas: at an offered ``--rate`` (open loop: a submission leaves on
   schedule whatever the earlier ones are doing), or with ``--concurrency``
   documents in flight (closed loop: the next leaves when one has ended);
2. by ``POST /documents`` (``--path upload``, what a person or a script
   uploading a batch does) or by ``process_document`` for objects put in the
   bucket beforehand (``--path s3``, what the S3-triggered Lambda does);
3. follows every task in the ``tasks`` table until it ends or the deadline
   passes, while sampling the memory and CPU of every process of the mesh;
4. prints throughput, latencies, peak memory and CPU per service, and the
   counts completed / failed / lost / duplicated.

The load client is the realm's ``lambda-trigger`` (role ``lambda``: upload,
``process_document``) with a DPoP-bound token, so the edge hop checks a proof
and claims its single use too (``--bearer`` sends a plain bearer token, as a
caller without a key would). The shipped policy allows each principal 300
requests a minute per replica; the run gives the orchestrators a copy of it
in which only role ``lambda`` may make more, and says so.

Exit status: 0 when every accepted document ended and none ran twice, 1 when
one was lost or duplicated, 2 when the mesh could not start.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import resource
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from services.launcher.errors import LauncherError
from services.launcher.mesh import BUCKET, DB_NAME, LocalMesh
from shared.auth.dpop import DpopKey
from shared.auth.policy import SecurityPolicy
from shared.tls import client_context

SAMPLE = "pdf/sample_invoice.pdf"
CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"
BUNDLED = Path(__file__).resolve().parents[1] / "services/launcher/samples"
CLIENT = "lambda-trigger"
ROLE = "lambda"
REPLICAS = 2
MESH_SERVICES = ("orchestrator", "extractor", "validator", "archivist")
HOPS = ("extracting_ms", "validating_ms", "archiving_ms", "total_ms")
TERMINAL = ("completed", "failed", "canceled")
NOT_OFFERED = "not_offered_by_the_time_limit"
_POLL_SECONDS = 0.1
_SAMPLE_SECONDS = 0.5
_TOKEN_MARGIN_SECONDS = 60.0
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
# The figures the requirement asks for on this machine.
TARGET_RATE = 50.0
TARGET_P99_MS = 2000.0
TARGET_RSS_MIB = 200.0


def say(line: str = "") -> None:
    """Progress, on stderr: stdout holds the figures (or the JSON)."""
    print(line, file=sys.stderr, flush=True)


# ------------------------------------------------------------------ policy


def load_policy(folder: Path, budget: int) -> Path:
    """The shipped policy with role ``lambda`` allowed ``budget`` requests a
    minute per replica, checked by loading it as the services will."""
    text = resources.files("shared.auth").joinpath("policy.toml").read_text()
    header = "[rate_limit.roles]\n"
    if header not in text:
        raise SystemExit("load: the shipped policy has no [rate_limit.roles] table")
    path = folder / "load-policy.toml"
    path.write_text(text.replace(header, f"{header}{ROLE} = {budget}\n", 1))

    limit = SecurityPolicy.load(path).rate_limit.limit_for([ROLE])
    if limit != budget:
        raise SystemExit(f"load: the load policy gives {ROLE} {limit}, not {budget}")
    return path


# ------------------------------------------------------------------ client


class EdgeToken:
    """The load client's token for the orchestrators, renewed a minute before
    it expires; DPoP-bound unless ``key`` is None."""

    def __init__(
        self, http: httpx.AsyncClient, mesh: LocalMesh, key: DpopKey | None
    ) -> None:
        self._http = http
        self._url = mesh.addresses.token_url
        self._auth = (CLIENT, mesh.client_secrets[CLIENT])
        self._key = key
        self._token = ""
        self._renew_at = 0.0
        self._lock = asyncio.Lock()

    async def headers(self, url: str, body: bytes) -> dict[str, str]:
        """Authorization (and proof) for one POST of ``body`` to ``url``."""
        async with self._lock:
            if time.monotonic() >= self._renew_at:
                await self._renew()
        if self._key is None:
            return {"Authorization": f"Bearer {self._token}"}
        proof = self._key.proof("POST", url, access_token=self._token, body=body)
        return {"Authorization": f"DPoP {self._token}", "DPoP": proof}

    async def _renew(self) -> None:
        headers = {}
        if self._key is not None:
            # The identity provider binds the token to a key shown this way.
            headers["DPoP"] = self._key.proof("POST", self._url)
        response = await self._http.post(
            self._url,
            data={"grant_type": "client_credentials"},
            auth=self._auth,
            headers=headers,
        )
        response.raise_for_status()
        body = response.json()
        self._token = str(body["access_token"])
        lifetime = float(body.get("expires_in", 300))
        self._renew_at = time.monotonic() + max(lifetime - _TOKEN_MARGIN_SECONDS, 1.0)


@dataclass
class Submission:
    """One document offered to the mesh, and what became of the offer."""

    index: int
    replica: int
    scheduled: float = 0.0
    """When it was due to leave (wall clock, seconds)."""
    sent: float = 0.0
    accept_ms: float = 0.0
    task_id: uuid.UUID | None = None
    refusal: str | None = None


class Refused(Exception):
    """The orchestrator did not accept a document; the message is a code."""


class Submitter:
    """Sends documents to the orchestrator replicas by the chosen path."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        token: EdgeToken,
        urls: Sequence[str],
        *,
        path: str,
        data: bytes,
        run: str,
    ) -> None:
        self._http = http
        self._token = token
        self._urls = list(urls)
        self._path = path
        self._data = data
        self.run = run

    def s3_key(self, index: int) -> str:
        return f"incoming/load-{self.run}/invoice-{index:05d}.pdf"

    def idempotency_key(self, index: int) -> str:
        return f"load-{self.run}-{index}"

    async def send(self, submission: Submission) -> None:
        """Submit one document; the outcome is written into ``submission``."""
        base = self._urls[submission.replica]
        submission.sent = time.time()
        started = time.perf_counter()
        try:
            if self._path == "upload":
                submission.task_id = await self._upload(base, submission.index)
            else:
                submission.task_id = await self._process(base, submission.index)
        except httpx.HTTPError as error:
            submission.refusal = type(error).__name__
        except ValueError:
            submission.refusal = "unreadable_reply"
        except Refused as refusal:
            submission.refusal = str(refusal)
        submission.accept_ms = (time.perf_counter() - started) * 1000

    async def _upload(self, base: str, index: int) -> uuid.UUID:
        url = f"{base}/documents"
        files = {"file": (f"invoice-{index:05d}.pdf", self._data, "application/pdf")}
        request = self._http.build_request("POST", url, files=files)
        # The proof covers the exact bytes: build the multipart body first.
        body = request.read()
        request.headers.update(await self._token.headers(url, body))
        request.headers["Idempotency-Key"] = self.idempotency_key(index)
        response = await self._http.send(request)
        if response.status_code != 202:
            raise Refused(f"http_{response.status_code}")
        return uuid.UUID(response.json()["task_id"])

    async def _process(self, base: str, index: int) -> uuid.UUID:
        url = f"{base}/a2a"
        call = {
            "jsonrpc": "2.0",
            "id": index,
            "method": "process_document",
            "params": {"s3_key": self.s3_key(index)},
        }
        body = json.dumps(call).encode()
        headers = await self._token.headers(url, body)
        headers["Content-Type"] = "application/json"
        response = await self._http.post(url, content=body, headers=headers)
        reply = response.json()
        if response.status_code != 200 or "result" not in reply:
            code = reply.get("error", {}).get("code", "none")
            raise Refused(f"http_{response.status_code}_rpc_{code}")
        return uuid.UUID(reply["result"]["task_id"])


def stage_objects(
    mesh: LocalMesh, submitter: Submitter, data: bytes, count: int
) -> None:
    """Put the documents into the bucket for ``--path s3``, as someone else's
    uploads would have, before anything is timed."""
    s3 = mesh.aws.client("s3")

    def put(index: int) -> None:
        s3.put_object(
            Bucket=BUCKET,
            Key=submitter.s3_key(index),
            Body=data,
            ContentType="application/pdf",
            ServerSideEncryption="AES256",
        )

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(put, range(count)))


# ----------------------------------------------------------------- tracking


@dataclass(frozen=True)
class TaskEnd:
    """A task as it ended, from the ``tasks`` table (times: wall clock, s)."""

    status: str
    reason_code: str | None
    created: float
    started: float | None
    finished: float
    timings: dict[str, float]


class TaskWatch:
    """Reads the ``tasks`` table for the tasks still running, every 0.1 s.

    The end time is the row's ``finished_at``, written by the orchestrator on
    the same machine's clock, so the polling interval does not enter the
    latencies; reading the table also puts no load on the orchestrators that
    a fire-and-forget batch client would not.
    """

    def __init__(self, connection: asyncpg.Connection) -> None:
        self._db = connection
        self._waiting: dict[uuid.UUID, asyncio.Future[TaskEnd]] = {}
        self.ended: dict[uuid.UUID, TaskEnd] = {}
        self.idle = asyncio.Event()
        """Set while no task followed is still running."""
        self.idle.set()

    def follow(self, task_id: uuid.UUID) -> asyncio.Future[TaskEnd]:
        future: asyncio.Future[TaskEnd] = asyncio.get_running_loop().create_future()
        self._waiting[task_id] = future
        self.idle.clear()
        return future

    def pending(self) -> int:
        return len(self._waiting)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            if self._waiting:
                await self._poll()
            await asyncio.sleep(_POLL_SECONDS)

    async def _poll(self) -> None:
        rows = await self._db.fetch(
            "SELECT id, status, reason_code, timings, created_at, started_at,"
            " finished_at FROM tasks"
            " WHERE id = ANY($1::uuid[]) AND status = ANY($2::text[])",
            list(self._waiting),
            list(TERMINAL),
        )
        for row in rows:
            started = row["started_at"]
            end = TaskEnd(
                status=row["status"],
                reason_code=row["reason_code"],
                created=row["created_at"].timestamp(),
                started=started.timestamp() if started is not None else None,
                finished=row["finished_at"].timestamp(),
                timings=json.loads(row["timings"]),
            )
            self.ended[row["id"]] = end
            future = self._waiting.pop(row["id"])
            if not future.done():  # a closed-loop worker may have given up
                future.set_result(end)
        if not self._waiting:
            self.idle.set()


# ------------------------------------------------------------ process usage


@dataclass
class Usage:
    """What one service's processes used: each process's peak resident
    memory, and the CPU time of all of them when the window opened and
    closed."""

    root: int
    peak_kib: dict[int, int] = field(default_factory=dict)
    cpu_start: float = 0.0
    cpu_end: float = 0.0


class ProcessSampler:
    """Samples every process the mesh started, and their children, from
    ``/proc`` in a thread of its own: VmHWM (the kernel's record of the
    process's peak resident memory) and CPU time. Children are looked up at
    every sample, so one a service starts later is counted too."""

    def __init__(self, roots: dict[str, int]) -> None:
        self._roots = roots
        self.usage = {name: Usage(pid) for name, pid in roots.items()}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="sampler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._sample()

    def mark_start(self) -> None:
        for name, cpu in self._cpu().items():
            self.usage[name].cpu_start = cpu

    def mark_end(self) -> None:
        for name, cpu in self._cpu().items():
            self.usage[name].cpu_end = cpu

    def _cpu(self) -> dict[str, float]:
        trees = _process_trees(self._roots)
        return {name: sum(map(_cpu_seconds, pids)) for name, pids in trees.items()}

    def _loop(self) -> None:
        while not self._stop.wait(_SAMPLE_SECONDS):
            self._sample()

    def _sample(self) -> None:
        for name, pids in _process_trees(self._roots).items():
            peaks = self.usage[name].peak_kib
            for pid in pids:
                peak = _peak_kib(pid)
                if peak is not None:
                    peaks[pid] = max(peaks.get(pid, 0), peak)


def _process_trees(roots: dict[str, int]) -> dict[str, list[int]]:
    """Each root process with all its descendants, by name."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        stat = _read_stat(entry.name) if entry.name.isdigit() else None
        if stat is not None:
            children.setdefault(int(stat[1]), []).append(int(entry.name))

    trees: dict[str, list[int]] = {}
    for name, root in roots.items():
        found, todo = [], [root]
        while todo:
            pid = todo.pop()
            found.append(pid)
            todo.extend(children.get(pid, []))
        trees[name] = found
    return trees


def _read_stat(pid: str) -> list[str] | None:
    """The fields of ``/proc/<pid>/stat`` after the command name (which may
    hold spaces and parentheses): state, ppid, ..."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rsplit(")", 1)[1].split()


def _peak_kib(pid: int) -> int | None:
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return None


def _cpu_seconds(pid: int) -> float:
    stat = _read_stat(str(pid))
    if stat is None:
        return 0.0
    # utime, stime, and the same for children that have been waited for.
    return sum(int(value) for value in stat[11:15]) / _CLOCK_TICKS


# ------------------------------------------------------------------ driving


async def offer_at_rate(
    submitter: Submitter,
    watch: TaskWatch,
    submissions: list[Submission],
    rate: float,
    limit: float,
) -> None:
    """Open loop: the i-th submission leaves at ``start + i / rate``, whatever
    the earlier ones are doing; none leaves after ``limit`` (monotonic)."""
    start = time.time() + 0.1
    jobs = []
    for position, submission in enumerate(submissions):
        submission.scheduled = start + position / rate
        delay = submission.scheduled - time.time()
        # Behind schedule, the overdue ones all leave now: yielding to the
        # loop for each would cap the rate at one per busy loop turn.
        if delay > 0:
            await asyncio.sleep(delay)
        if time.monotonic() > limit:
            submission.refusal = NOT_OFFERED
            continue
        jobs.append(asyncio.create_task(_submit(submitter, watch, submission)))
    await asyncio.gather(*jobs)


async def offer_in_flight(
    submitter: Submitter,
    watch: TaskWatch,
    submissions: list[Submission],
    concurrency: int,
    limit: float,
) -> None:
    """Closed loop: ``concurrency`` workers, each submitting its next
    document once its last one has ended (or was refused); none leaves
    after ``limit`` (monotonic)."""
    queue = iter(submissions)

    async def worker() -> None:
        for submission in queue:
            if time.monotonic() > limit:
                submission.refusal = NOT_OFFERED
                continue
            submission.scheduled = time.time()
            ended = await _submit(submitter, watch, submission)
            if ended is None:
                continue
            try:
                await asyncio.wait_for(ended, max(limit - time.monotonic(), 0.0))
            except TimeoutError:
                continue

    await asyncio.gather(*(worker() for _ in range(concurrency)))


async def _submit(
    submitter: Submitter, watch: TaskWatch, submission: Submission
) -> asyncio.Future[TaskEnd] | None:
    await submitter.send(submission)
    if submission.task_id is None:
        return None
    return watch.follow(submission.task_id)


async def wait_for_ends(watch: TaskWatch, deadline: float) -> None:
    """Until every accepted task has ended, or the deadline has passed."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(watch.idle.wait(), max(deadline - time.monotonic(), 0))


# ---------------------------------------------------------------- measuring


@dataclass
class Measured:
    """What one run observed, before it is summed up."""

    submissions: list[Submission]
    ended: dict[uuid.UUID, TaskEnd]
    duplicates: dict[str, set[str]]
    client_cpu_seconds: float


async def measure(
    mesh: LocalMesh, args: argparse.Namespace, data: bytes, sampler: ProcessSampler
) -> Measured:
    """Warm up, offer the documents, wait for their tasks, check the table."""
    run = uuid.uuid4().hex[:8]
    warmup = [Submission(i, i % REPLICAS) for i in range(args.warmup)]
    offered = [Submission(args.warmup + i, i % REPLICAS) for i in range(args.documents)]
    limits = httpx.Limits(
        max_connections=args.connections, max_keepalive_connections=args.connections
    )
    async with httpx.AsyncClient(
        verify=client_context(mesh.ca_file), timeout=30.0, limits=limits
    ) as http:
        token = EdgeToken(http, mesh, None if args.bearer else DpopKey())
        urls = mesh.addresses.replica_urls["orchestrator"]
        submitter = Submitter(http, token, urls, path=args.path, data=data, run=run)
        if args.path == "s3":
            say(f"putting {args.warmup + args.documents} objects into the bucket")
            total = args.warmup + args.documents
            await asyncio.to_thread(stage_objects, mesh, submitter, data, total)

        if mesh.database is None:
            raise LauncherError("the mesh has no database")
        connection = await mesh.database.connect(DB_NAME)
        try:
            watch = TaskWatch(connection)
            measured = await _drive(submitter, watch, warmup, offered, args, sampler)
            measured.duplicates = await duplicate_checks(
                connection, run, _accepted(offered), _accepted(warmup + offered)
            )
        finally:
            await connection.close()
    return measured


async def _drive(
    submitter: Submitter,
    watch: TaskWatch,
    warmup: list[Submission],
    offered: list[Submission],
    args: argparse.Namespace,
    sampler: ProcessSampler,
) -> Measured:
    stop = asyncio.Event()
    watcher = asyncio.create_task(watch.run(stop))
    try:
        if warmup:
            say(f"warming up with {len(warmup)} documents (not counted)")
            await offer_in_flight(
                submitter, watch, warmup, 4, time.monotonic() + args.drain
            )
            await wait_for_ends(watch, time.monotonic() + args.drain)

        await asyncio.to_thread(sampler.mark_start)
        cpu_before = _own_cpu_seconds()
        limit = time.monotonic() + args.time_limit
        if args.concurrency:
            say(f"offering {len(offered)} documents, {args.concurrency} in flight")
            await offer_in_flight(submitter, watch, offered, args.concurrency, limit)
        else:
            say(f"offering {len(offered)} documents at {args.rate:g} a second")
            await offer_at_rate(submitter, watch, offered, args.rate, limit)
        say(f"waiting up to {args.drain:g} s for {watch.pending()} tasks to end")
        await wait_for_ends(watch, min(limit, time.monotonic() + args.drain))
        await asyncio.to_thread(sampler.mark_end)
        cpu = _own_cpu_seconds() - cpu_before
    finally:
        stop.set()
        await watcher
    return Measured(offered, dict(watch.ended), {}, cpu)


def _accepted(submissions: Iterable[Submission]) -> list[uuid.UUID]:
    return [s.task_id for s in submissions if s.task_id is not None]


def _own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# Each query names the tasks (of those given) that show the mark of a second
# run of their pipeline, or of a second task for one document.
_DUPLICATE_CHECKS = {
    "pipeline started twice (attempts > 1)": (
        "SELECT id FROM tasks WHERE id = ANY($1::uuid[]) AND attempts > 1"
    ),
    "document archived twice (its row updated after it was made)": (
        "SELECT t.id FROM tasks t JOIN documents d ON d.s3_key = t.s3_key"
        " WHERE t.id = ANY($1::uuid[]) AND d.updated_at > d.created_at"
    ),
    "more than one document row for the task's object": (
        "SELECT t.id FROM tasks t JOIN documents d ON d.s3_key = t.s3_key"
        " WHERE t.id = ANY($1::uuid[]) GROUP BY t.id HAVING count(*) > 1"
    ),
    "more than one task for the task's object": (
        "SELECT t.id FROM tasks t WHERE t.id = ANY($1::uuid[])"
        " AND (SELECT count(*) FROM tasks o WHERE o.s3_key = t.s3_key) > 1"
    ),
}


async def duplicate_checks(
    db: asyncpg.Connection,
    run: str,
    measured: list[uuid.UUID],
    accepted: list[uuid.UUID],
) -> dict[str, set[str]]:
    """Tasks of the measured documents that ran (or exist) more than once,
    by check; and tasks of this run the client never got an answer for."""
    found = {
        check: {str(row["id"]) for row in await db.fetch(query, measured)}
        for check, query in _DUPLICATE_CHECKS.items()
    }
    unanswered = await db.fetch(
        "SELECT id FROM tasks WHERE (idempotency_key LIKE $1 OR s3_key LIKE $2)"
        " AND NOT (id = ANY($3::uuid[]))",
        f"load-{run}-%",
        f"incoming/load-{run}/%",
        accepted,
    )
    found["task made that the client was not told of"] = {
        str(row["id"]) for row in unanswered
    }
    return found


def logged_twice(log_dir: Path, task_ids: set[str]) -> set[str]:
    """Tasks whose end (completed or failed) the orchestrator replicas logged
    more than once between them: two pipelines that each reached the end."""
    ends: Counter[str] = Counter()
    for path in sorted(log_dir.glob("orchestrator*.log")):
        with path.open(encoding="utf-8", errors="replace") as lines:
            for line in lines:
                if '"task.completed"' not in line and '"task.failed"' not in line:
                    continue
                try:
                    task_id = json.loads(line).get("task_id")
                except ValueError:
                    continue
                if task_id in task_ids:
                    ends[task_id] += 1
    return {task_id for task_id, count in ends.items() if count > 1}


# ------------------------------------------------------------------ figures


@dataclass(frozen=True)
class Spread:
    """Nearest-rank percentiles of some durations, in milliseconds."""

    count: int
    p50: float
    p95: float
    p99: float
    max: float

    @classmethod
    def of(cls, samples: Sequence[float]) -> Spread | None:
        if not samples:
            return None
        ordered = sorted(samples)

        def rank(q: float) -> float:
            return round(ordered[max(1, math.ceil(len(ordered) * q / 100)) - 1], 1)

        return cls(len(ordered), rank(50), rank(95), rank(99), round(ordered[-1], 1))


def summarize(
    measured: Measured, usage: dict[str, Usage], setup: dict[str, Any]
) -> dict[str, Any]:
    """Every figure of the run, as plain data (what ``--json`` prints)."""
    pairs = _ended_pairs(measured)
    summary: dict[str, Any] = {
        "setup": setup,
        "offering": _offering(measured),
        "throughput": _throughput(measured, pairs),
        "latency_ms": _latencies(measured, pairs),
        "services": _services(usage, len(pairs)),
        "client": {
            "pid": os.getpid(),
            "cpu_seconds": round(measured.client_cpu_seconds, 1),
        },
        "counts": _counts(measured, pairs),
        "ended_per_5s": _timeline(measured, pairs),
    }
    summary["targets"] = _verdicts(summary)
    return summary


def _ended_pairs(measured: Measured) -> list[tuple[Submission, TaskEnd]]:
    return [
        (s, measured.ended[s.task_id])
        for s in measured.submissions
        if s.task_id is not None and s.task_id in measured.ended
    ]


def _offering(measured: Measured) -> dict[str, Any]:
    sent = [s for s in measured.submissions if s.sent]
    if not sent:
        return {"sent": 0}
    first, last = min(s.sent for s in sent), max(s.sent for s in sent)
    late = [s.sent - s.scheduled for s in sent]
    return {
        "sent": len(sent),
        "accepted": sum(s.task_id is not None for s in sent),
        "seconds": round(last - first, 2),
        "per_second": round((len(sent) - 1) / (last - first), 1)
        if last > first
        else None,
        "max_late_ms": round(max(late) * 1000, 1),
    }


def _throughput(
    measured: Measured, pairs: list[tuple[Submission, TaskEnd]]
) -> dict[str, Any]:
    if not pairs:
        return {"window_seconds": None}
    first_sent = min(s.sent for s in measured.submissions if s.sent)
    ends = sorted(end.finished for _, end in pairs)
    window = ends[-1] - first_sent
    completed = sum(end.status == "completed" for _, end in pairs)
    span = ends[-1] - ends[0]
    return {
        "window_seconds": round(window, 2),
        "ended_per_second": round(len(pairs) / window, 1),
        "completed_per_second": round(completed / window, 1),
        # Between the first and the last end: the pace the pipeline kept,
        # without the first document's latency in the window.
        "ends_span_per_second": round((len(ends) - 1) / span, 1) if span else None,
    }


def _latencies(
    measured: Measured, pairs: list[tuple[Submission, TaskEnd]]
) -> dict[str, Any]:
    accepted = [s for s in measured.submissions if s.task_id is not None]
    figures = {
        "end_to_end": Spread.of([(e.finished - s.sent) * 1000 for s, e in pairs]),
        "accept": Spread.of([s.accept_ms for s in accepted]),
        "queued": Spread.of(
            [(e.started - e.created) * 1000 for _, e in pairs if e.started is not None]
        ),
    }
    for hop in HOPS:
        samples = [e.timings[hop] for _, e in pairs if hop in e.timings]
        figures[hop.removesuffix("_ms")] = Spread.of(samples)
    return {
        name: asdict(spread) if spread else None for name, spread in figures.items()
    }


def _services(usage: dict[str, Usage], ended: int) -> dict[str, Any]:
    figures = {}
    for name, used in usage.items():
        children = [kib for pid, kib in used.peak_kib.items() if pid != used.root]
        cpu = used.cpu_end - used.cpu_start
        figures[name] = {
            "pid": used.root,
            "peak_rss_mib": round(used.peak_kib.get(used.root, 0) / 1024, 1),
            "child_processes": len(children),
            "largest_child_peak_rss_mib": round(max(children) / 1024, 1)
            if children
            else None,
            "cpu_seconds": round(cpu, 1),
            "cpu_ms_per_document": round(cpu * 1000 / ended, 1) if ended else None,
        }
    return figures


def _counts(
    measured: Measured, pairs: list[tuple[Submission, TaskEnd]]
) -> dict[str, Any]:
    failed: Counter[str] = Counter()
    for submission in measured.submissions:
        if submission.refusal is not None:
            failed[f"refused:{submission.refusal}"] += 1
    for _, end in pairs:
        if end.status != "completed":
            failed[end.reason_code or end.status] += 1
    accepted = sum(s.task_id is not None for s in measured.submissions)
    duplicated = set().union(*measured.duplicates.values())
    return {
        "documents": len(measured.submissions),
        "completed": sum(end.status == "completed" for _, end in pairs),
        "failed": sum(failed.values()),
        "failed_reasons": dict(failed.most_common()),
        "lost": accepted - len(pairs),
        "duplicated": len(duplicated),
        "duplicated_by_check": {
            check: len(ids) for check, ids in measured.duplicates.items()
        },
    }


def _timeline(measured: Measured, pairs: list[tuple[Submission, TaskEnd]]) -> list[int]:
    if not pairs:
        return []
    first_sent = min(s.sent for s in measured.submissions if s.sent)
    buckets: Counter[int] = Counter(
        int((e.finished - first_sent) // 5) for _, e in pairs
    )
    return [buckets.get(i, 0) for i in range(max(buckets) + 1)]


def _verdicts(summary: dict[str, Any]) -> dict[str, bool | None]:
    rate = summary["throughput"].get("completed_per_second")
    end_to_end = summary["latency_ms"]["end_to_end"]
    mesh_services = [
        figures["peak_rss_mib"]
        for name, figures in summary["services"].items()
        if name.split("-")[0] in MESH_SERVICES
    ]
    counts = summary["counts"]
    return {
        f"at least {TARGET_RATE:g} completed documents/s": None
        if rate is None
        else rate >= TARGET_RATE,
        f"p99 end to end under {TARGET_P99_MS:g} ms": None
        if end_to_end is None
        else end_to_end["p99"] < TARGET_P99_MS,
        f"peak RSS under {TARGET_RSS_MIB:g} MiB per mesh service": max(mesh_services)
        < TARGET_RSS_MIB,
        "none lost": counts["lost"] == 0,
        "none duplicated": counts["duplicated"] == 0,
    }


# ------------------------------------------------------------------- report


def print_report(summary: dict[str, Any]) -> None:
    setup, offering = summary["setup"], summary["offering"]
    print(
        f"{setup['documents']:,} x {setup['document']} ({setup['document_bytes']:,}"
        f" bytes) through {REPLICAS} orchestrator replicas, round-robin"
    )
    print(f"path: {setup['path_description']}; offered: {setup['offered']}")
    print(f"security: {setup['security']}")
    print(f"machine: {setup['machine']}")
    print()
    print(
        f"offered {offering['sent']:,} in {offering.get('seconds')} s"
        f" ({offering.get('per_second')}/s, latest {offering.get('max_late_ms')} ms"
        f" behind schedule); accepted {offering.get('accepted', 0):,}"
    )
    _print_throughput(summary["throughput"])
    print()
    _print_latencies(summary["latency_ms"])
    print()
    _print_services(summary["services"], summary["client"])
    print()
    _print_counts(summary["counts"])
    print(f"ended per 5 s: {' '.join(map(str, summary['ended_per_5s']))}")
    print()
    for target, met in summary["targets"].items():
        verdict = "n/a" if met is None else ("met" if met else "NOT met")
        print(f"target {target}: {verdict}")


def _print_throughput(figures: dict[str, Any]) -> None:
    if figures["window_seconds"] is None:
        print("no task ended")
        return
    print(
        f"first submission to last end: {figures['window_seconds']} s;"
        f" {figures['ended_per_second']} documents/s ended,"
        f" {figures['completed_per_second']} completed;"
        f" first to last end: {figures['ends_span_per_second']}/s"
    )


def _print_latencies(latencies: dict[str, Any]) -> None:
    labels = {
        "end_to_end": "end to end (sent → task ended)",
        "accept": "accepted (sent → 202 / reply)",
        "queued": "queued (task made → first stage)",
        "extracting": "hop extracting",
        "validating": "hop validating",
        "archiving": "hop archiving",
        "total": "pipeline total",
    }
    print(f"{'latency, ms':38}{'p50':>9}{'p95':>9}{'p99':>9}{'max':>9}{'n':>7}")
    for name, label in labels.items():
        spread = latencies.get(name)
        if spread is None:
            print(f"{label:38}{'-':>9}")
            continue
        cells = "".join(f"{spread[q]:>9,.1f}" for q in ("p50", "p95", "p99", "max"))
        print(f"{label:38}{cells}{spread['count']:>7}")


def _print_services(services: dict[str, Any], client: dict[str, Any]) -> None:
    print(f"{'process':16}{'pid':>8}{'peak RSS MiB':>14}{'CPU s':>8}{'CPU ms/doc':>12}")
    for name, figures in services.items():
        per_doc = figures["cpu_ms_per_document"]
        line = (
            f"{name:16}{figures['pid']:>8}{figures['peak_rss_mib']:>14,.1f}"
            f"{figures['cpu_seconds']:>8,.1f}{'-' if per_doc is None else per_doc:>12}"
        )
        if figures["child_processes"]:
            line += (
                f"  + {figures['child_processes']} child processes, largest"
                f" {figures['largest_child_peak_rss_mib']} MiB"
            )
        print(line)
    print(f"{'load client':16}{client['pid']:>8}{'':>14}{client['cpu_seconds']:>8,.1f}")


def _print_counts(counts: dict[str, Any]) -> None:
    reasons = ", ".join(f"{k} {v}" for k, v in counts["failed_reasons"].items())
    print(
        f"documents {counts['documents']:,}: completed {counts['completed']:,},"
        f" failed {counts['failed']:,}{f' ({reasons})' if reasons else ''},"
        f" lost {counts['lost']:,}, duplicated {counts['duplicated']:,}"
    )
    for check, found in counts["duplicated_by_check"].items():
        print(f"  duplicate check, {check}: {found}")


# --------------------------------------------------------------------- main


def run(args: argparse.Namespace) -> int:
    data = args.document.read_bytes()
    budget = max(300, args.documents + args.warmup)
    setup = _setup(args, data, budget)
    with tempfile.TemporaryDirectory(prefix="mesh-load-") as folder:
        policy = load_policy(Path(folder), budget)
        say("starting the mesh (PostgreSQL, AWS endpoint, identity, services)")
        with LocalMesh(
            service_env={"orchestrator": {"MESH_POLICY_FILE": str(policy)}},
            replicas={"orchestrator": REPLICAS},
            keep=args.keep,
        ) as mesh:
            sampler = ProcessSampler(_roots(mesh))
            say("processes: " + ", ".join(f"{n} {p}" for n, p in _roots(mesh).items()))
            sampler.start()
            try:
                measured = asyncio.run(measure(mesh, args, data, sampler))
            finally:
                sampler.stop()
            ids = {str(task_id) for task_id in _accepted(measured.submissions)}
            measured.duplicates["ended twice in the orchestrators' logs"] = (
                logged_twice(mesh.log_dir, ids)
            )
            if args.keep:
                say(f"run folder kept: {mesh.work_dir}")
                if mesh.database is not None:
                    say(f"PostgreSQL's folder kept: {mesh.database.work_dir}")

    summary = summarize(measured, sampler.usage, setup)
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print_report(summary)
    counts = summary["counts"]
    return 1 if counts["lost"] or counts["duplicated"] else 0


def _roots(mesh: LocalMesh) -> dict[str, int]:
    """The process id of every process the mesh started, by name."""
    roots = {
        name: process.pid
        for name, process in mesh.processes.items()
        if process.pid is not None
    }
    if mesh.database is not None and mesh.database.pid is not None:
        roots["postgres"] = mesh.database.pid
    return roots


def _setup(args: argparse.Namespace, data: bytes, budget: int) -> dict[str, Any]:
    if args.path == "upload":
        path = "POST /documents (multipart upload, an Idempotency-Key per document)"
    else:
        path = "process_document on objects put into the bucket beforehand"
    if args.concurrency:
        offered = f"closed loop, {args.concurrency} documents in flight"
    else:
        offered = f"open loop at {args.rate:g} documents/s"
    edge = "a plain bearer token" if args.bearer else "a DPoP-bound token"
    load = os.getloadavg()
    return {
        "documents": args.documents,
        "document": args.document.name,
        "document_bytes": len(data),
        "path": args.path,
        "path_description": path,
        "offered": offered,
        "security": (
            f"TLS on every hop, mutual TLS to the agents, a JWT checked on every hop,"
            f" DPoP between the services; the client {CLIENT} sends {edge};"
            f" role {ROLE} may make {budget:,} requests a minute per replica"
            f" (shipped policy: 300) for this run"
        ),
        "machine": (
            f"{os.cpu_count()} CPUs, load average {load[0]:.2f} before the run,"
            f" Python {platform.python_version()}"
        ),
        "warmup": args.warmup,
    }


def bounded(
    kind: Callable[[str], Any], low: float, high: float
) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        value = kind(text)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be from {low:g} to {high:g}")
        return value

    return parse


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Load the local mesh (two orchestrator replicas) with documents."
    )
    parser.add_argument(
        "--documents",
        type=bounded(int, 1, 20_000),
        default=1_000,
        help="documents offered and counted (default 1000)",
    )
    pace = parser.add_mutually_exclusive_group()
    pace.add_argument(
        "--rate",
        type=bounded(float, 0.1, 1_000),
        default=50.0,
        help="open loop: documents offered a second (default 50)",
    )
    pace.add_argument(
        "--concurrency",
        type=bounded(int, 1, 512),
        help="closed loop instead: documents in flight, each replaced once it ends",
    )
    parser.add_argument(
        "--path",
        choices=("upload", "s3"),
        default="upload",
        help="upload: POST /documents; s3: process_document on objects put"
        " into the bucket first, as the S3-triggered Lambda (default upload)",
    )
    parser.add_argument(
        "--bearer",
        action="store_true",
        help="send a plain bearer token instead of a DPoP-bound one",
    )
    parser.add_argument(
        "--warmup",
        type=bounded(int, 0, 1_000),
        default=20,
        help="documents processed first and not counted (default 20)",
    )
    parser.add_argument(
        "--drain",
        type=bounded(float, 1, 3_600),
        default=120.0,
        help="seconds to wait for the tasks after the last submission;"
        " a task not ended by then is lost (default 120)",
    )
    parser.add_argument(
        "--time-limit",
        type=bounded(float, 10, 7_200),
        default=900.0,
        help="seconds the whole measured phase may take; a document not yet"
        " offered by then is not offered (default 900)",
    )
    parser.add_argument(
        "--connections",
        type=bounded(int, 1, 1_000),
        default=64,
        help="HTTP connections the client keeps to the replicas (default 64)",
    )
    parser.add_argument(
        "--document",
        type=Path,
        default=_sample(),
        help=f"the document offered (default the corpus's {SAMPLE})",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead")
    parser.add_argument(
        "--keep",
        action="store_true",
        help="keep the run folder (logs, certificates) and PostgreSQL's data",
    )
    return parser.parse_args(argv)


def _sample() -> Path:
    """The corpus beside the checkout, else the copy bundled with the demo."""
    corpus = CORPUS / SAMPLE
    return corpus if corpus.is_file() else BUNDLED / Path(SAMPLE).name


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return run(args)
    except LauncherError as error:
        # PostgreSQL missing, or a process that would not start: say why.
        say(f"load: {error}")
        return 2


if __name__ == "__main__":
    sys.exit(main())

"""What the security stack costs per request, measured on this machine.

Run by hand: ``.venv/bin/python benchmarks/security_stack.py`` (``--help`` for
the flags). The script starts what it measures against itself: a throwaway
PostgreSQL 15 that speaks TLS only, and two copies of a small agent endpoint,
one behind the real security gate and one behind a gate that admits everyone.
Everything it started is stopped before it exits.

1. In process: ``SecurityGate.admit()`` for a DPoP-bound RS256 access token and
   a fresh ES256 proof over a ~2 KB JSON-RPC body, the replay claim being a
   real round trip to PostgreSQL; then token verification, proof verification
   and the replay claim alone.
2. Over HTTP: both endpoints driven alternately, round by round; requests per
   second and latency under load, then latency one request at a time.
3. A verdict against the target: less than 1 ms per hop at the median.

Proofs and tokens are made before each timed phase: making them is the
caller's cost, printed separately.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import secrets
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import httpx
import jwt
import uvicorn
from fastapi import FastAPI, Request, Response

from certs.authority import DevCertificates, ensure_dev_certs
from services.identity.keys import RealmKeys, generate_keys
from services.launcher.errors import LauncherError
from services.launcher.ports import free_port
from services.launcher.postgres import PostgresCluster
from services.launcher.processes import ManagedProcess
from shared.auth.audit import Audit
from shared.auth.dpop import DpopKey, ProofVerifier
from shared.auth.gate import Arrival, Caller, Credentials, SecurityGate
from shared.auth.jwks import JwksCache
from shared.auth.middleware import AuthMiddleware, CorrelationMiddleware
from shared.auth.policy import SecurityPolicy
from shared.auth.principal import Principal
from shared.auth.replay import ReplayGuard
from shared.auth.store import PostgresSecurityStore
from shared.auth.verifier import TokenVerifier
from shared.database import Database, apply_migrations, connect, create_pool
from shared.jsonrpc import Call, Dispatcher, Method, Params
from shared.logging import configure_logging, correlation_id
from shared.runtime import open_gate
from shared.secrets import StaticSecretStore
from shared.service import MeshJSONResponse, principal_of
from shared.settings import DatabaseSettings
from shared.tls import client_context

T = TypeVar("T")

HOST = "127.0.0.1"
SERVICE = "extractor"
"""The endpoint plays the extractor, called by the orchestrator: a real hop."""
CALLER = "orchestrator"
ISSUER = "https://keycloak.invalid/realms/a2a-mesh"
JWKS_URL = f"{ISSUER}/protocol/openid-connect/certs"
RPC_PATH = "/a2a"
RPC_METHOD = "echo_fields"
BODY_BYTES = 2048
DB_NAME = "mesh"
DB_USER = "mesh"
DB_SECRET_ID = "a2a-mesh/db-password"  # noqa: S105 - an id, not a secret
VARIANTS = ("no-op", "stack")
ROUND_SECONDS = 55.0
"""Longest a timed round may take: its proofs were made before it started, and
the gate refuses proofs older than a minute."""
SERVER_START_SECONDS = 30.0

# The caller may call the one method, and the rate limit is high enough never
# to refuse: the limiter does all its work, it just always says yes.
POLICY = f"""
[roles]
{CALLER} = ["{RPC_METHOD}"]

[callers]
{SERVICE} = ["{CALLER}"]

[rate_limit]
requests_per_minute = 300

[rate_limit.roles]
{CALLER} = 100000000
"""


# ---------------------------------------------------------------- the caller


@dataclass(frozen=True)
class Realm:
    """The identity provider's side: its keys and the tokens it issues."""

    keys: RealmKeys
    subject: str

    @classmethod
    def generate(cls) -> Realm:
        # The identity stand-in's own keys: an RS256 signing key, and the
        # RSA-OAEP key Keycloak also publishes, so the JWKS has Keycloak's shape.
        return cls(generate_keys(), str(uuid.uuid4()))

    def token(self, dpop_key: DpopKey) -> str:
        """A client-credentials access token bound to ``dpop_key``, as Keycloak
        issues it to the orchestrator for the extractor."""
        now = int(time.time())
        claims = {
            "exp": now + 300,
            "iat": now,
            "jti": str(uuid.uuid4()),
            "iss": ISSUER,
            "aud": SERVICE,
            "sub": self.subject,
            "typ": "DPoP",
            "azp": CALLER,
            "acr": "1",
            "allowed-origins": ["/*"],
            "realm_access": {
                "roles": [CALLER, "offline_access", "default-roles-a2a-mesh"]
            },
            "resource_access": {"account": {"roles": ["view-profile"]}},
            "scope": f"profile email {SERVICE}-audience",
            "email_verified": False,
            "clientHost": HOST,
            "clientAddress": HOST,
            "client_id": CALLER,
            "preferred_username": f"service-account-{CALLER}",
            "cnf": {"jkt": dpop_key.thumbprint},
        }
        return jwt.encode(
            claims,
            self.keys.signing_key,
            algorithm="RS256",
            headers={"kid": self.keys.kid},
        )


@dataclass(frozen=True)
class Prepared:
    """One request, ready to send: token, proof and body made beforehand."""

    token: str
    proof: str
    body: bytes

    @property
    def headers(self) -> dict[str, str]:
        return {
            "Authorization": f"DPoP {self.token}",
            "DPoP": self.proof,
            "Content-Type": "application/json",
            "X-Correlation-ID": uuid.uuid4().hex,
        }

    def arrival(self, base_url: str) -> Arrival:
        return Arrival(
            method="POST",
            path=RPC_PATH,
            url=base_url + RPC_PATH,
            authorization=[f"DPoP {self.token}"],
            proofs=[self.proof],
            body=self.body,
            client_address=HOST,
        )


def rpc_body(request_id: int) -> bytes:
    """A JSON-RPC request of about ``BODY_BYTES``: extracted fields to echo."""
    fields: dict[str, str] = {}
    params = {"s3_key": f"uploads/2026/05/09/{uuid.uuid4()}-invoice.pdf"}
    request: dict[str, Any] = {
        "jsonrpc": "2.0",
        "method": RPC_METHOD,
        "params": {**params, "fields": fields},
        "id": request_id,
    }
    body = b""
    while len(body) < BODY_BYTES:
        number = len(fields) + 1
        fields[f"line_{number:02d}"] = f"Consulting, 8 h at 120.00 EUR (item {number})"
        body = json.dumps(request, separators=(",", ":")).encode()
    return body


def prepare(realm: Realm, key: DpopKey, base_url: str, count: int) -> list[Prepared]:
    """``count`` requests to ``base_url``, each with its own body and proof."""
    token = realm.token(key)
    url = base_url + RPC_PATH
    prepared = []
    for request_id in range(count):
        body = rpc_body(request_id)
        proof = key.proof("POST", url, access_token=token, body=body)
        prepared.append(Prepared(token, proof, body))
    return prepared


# ---------------------------------------------------------- the security stack


@dataclass(frozen=True)
class DbConfig:
    host: str
    port: int
    password: str
    ca_file: str

    def settings(self) -> DatabaseSettings:
        return DatabaseSettings(
            db_host=self.host,
            db_port=self.port,
            db_name=DB_NAME,
            db_user=DB_USER,
            db_password_secret_id=DB_SECRET_ID,
            db_ca_file=Path(self.ca_file),
        )


@dataclass(frozen=True)
class Security:
    """The gate and its parts, as a service's runtime builds them."""

    gate: SecurityGate
    verifier: TokenVerifier
    proofs: ProofVerifier
    replay: ReplayGuard
    database: Database


@asynccontextmanager
async def open_security(db: DbConfig, jwks: dict[str, Any]) -> AsyncIterator[Security]:
    """The real stack over the real database, wired as ``shared.runtime`` does,
    with the JWKS served in process (fetched once here, never per request)."""
    settings = db.settings()
    secret_store = StaticSecretStore({DB_SECRET_ID: db.password})
    policy = SecurityPolicy.parse(POLICY, "benchmark policy")

    async with AsyncExitStack() as stack:
        http = await stack.enter_async_context(jwks_client(jwks))
        pool = await create_pool(settings, secret_store)
        stack.push_async_callback(pool.close)
        await apply_migrations(pool)
        database = Database(pool, timeout=settings.db_command_timeout_seconds)
        store = PostgresSecurityStore(database)

        keys = JwksCache(http, JWKS_URL)
        await keys.refresh()
        if not keys.loaded:
            raise RuntimeError("the in-process JWKS did not load")

        gate = await open_gate(
            stack,
            service=SERVICE,
            audience=SERVICE,
            issuer=ISSUER,
            algorithms=("RS256", "PS256", "ES256"),
            accept_bearer=False,
            policy=policy,
            keys=keys,
            store=store,
            listen=partial(connect, settings, secret_store),
        )
        yield Security(gate, gate.verifier, gate.proofs, gate.replay, database)


def jwks_client(jwks: dict[str, Any]) -> httpx.AsyncClient:
    """An HTTP client that answers the JWKS URL from memory, and nothing else."""

    def answer(request: httpx.Request) -> httpx.Response:
        if str(request.url) == JWKS_URL:
            return httpx.Response(200, json=jwks)
        return httpx.Response(404)

    return httpx.AsyncClient(transport=httpx.MockTransport(answer))


class NoOpGate(SecurityGate):
    """The baseline: admits every request as one fixed caller, checking nothing.

    It skips ``SecurityGate.__init__`` on purpose: there is nothing to verify
    with. Every public method is overridden (the middleware calls ``identify``
    before it reads the body and ``confirm`` after), and ``audit`` is set.
    """

    def __init__(self) -> None:
        now = int(time.time())
        self.audit = Audit(SERVICE)
        self._principal = Principal(
            subject=str(uuid.uuid4()),
            client_id=CALLER,
            roles=frozenset({CALLER}),
            jti=str(uuid.uuid4()),
            expires_at=now + 300,
            issued_at=now,
            username=f"service-account-{CALLER}",
        )

    async def admit(self, arrival: Arrival) -> Principal:
        return self._principal

    async def identify(self, arrival: Arrival) -> Caller:
        return Caller(self._principal, Credentials("dpop", "", None), arrival)

    async def confirm(self, caller: Caller, body: bytes) -> Principal:
        return self._principal


# ------------------------------------------------------------- the endpoint


class EchoParams(Params):
    s3_key: str
    fields: dict[str, str]


async def echo_fields(params: EchoParams, call: Call) -> dict[str, object]:
    return {"s3_key": params.s3_key, "fields": len(params.fields)}


def build_app(gate: SecurityGate, base_url: str) -> FastAPI:
    """``POST /a2a`` as ``shared.service`` builds it, and an open ``GET /health``."""
    policy = SecurityPolicy.parse(POLICY, "benchmark policy")
    method = Method(RPC_METHOD, EchoParams, echo_fields, "Echo extracted fields")
    dispatcher = Dispatcher(
        [method],
        policy.roles,
        audit=gate.audit,
        max_depth=policy.limits.max_json_depth,
    )
    app = FastAPI(default_response_class=MeshJSONResponse, docs_url=None)
    app.add_middleware(
        AuthMiddleware,
        body_limits={RPC_PATH: policy.limits.body_bytes_for(SERVICE)},
        gate=gate,
        base_url=base_url,
    )
    app.add_middleware(CorrelationMiddleware)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.post(RPC_PATH)
    async def a2a(request: Request) -> Response:
        body = await request.body()
        call = Call(
            principal=principal_of(request), correlation_id=correlation_id.get()
        )
        reply = await dispatcher.dispatch(body, call)
        if reply.body is None:
            return Response(status_code=reply.status)
        return MeshJSONResponse(reply.body, status_code=reply.status)

    return app


@dataclass(frozen=True)
class ServerConfig:
    """What a server process needs; written to a 0600 file in the run folder."""

    variant: str
    port: int
    base_url: str
    certfile: str | None
    keyfile: str | None
    jwks: dict[str, Any]
    db: DbConfig

    def write(self, path: Path) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as file:
            json.dump(asdict(self), file)

    @classmethod
    def read(cls, path: Path) -> ServerConfig:
        raw = json.loads(path.read_text())
        return cls(**{**raw, "db": DbConfig(**raw["db"])})


def serve(config_path: Path) -> int:
    """The server process: one endpoint variant under uvicorn until SIGTERM."""
    config = ServerConfig.read(config_path)
    # As a service logs: JSON lines at INFO, one per request (method_executed).
    configure_logging(SERVICE, "INFO")
    asyncio.run(serve_endpoint(config))
    return 0


async def serve_endpoint(config: ServerConfig) -> None:
    async with AsyncExitStack() as stack:
        if config.variant == "stack":
            security = await stack.enter_async_context(
                open_security(config.db, config.jwks)
            )
            gate = security.gate
        else:
            gate = NoOpGate()
        server = uvicorn.Server(
            uvicorn.Config(
                build_app(gate, config.base_url),
                host=HOST,
                port=config.port,
                lifespan="off",
                log_config=None,
                access_log=False,
                server_header=False,
                # Connections wait idle while the other variant is measured.
                timeout_keep_alive=120,
                timeout_graceful_shutdown=2,
                ssl_certfile=config.certfile,
                ssl_keyfile=config.keyfile,
            )
        )
        await server.serve()


def start_server(
    variant: str,
    work: Path,
    certs: DevCertificates,
    realm: Realm,
    db: DbConfig,
    *,
    tls: bool,
) -> tuple[ManagedProcess, str]:
    """Start one endpoint variant as its own process; its base URL once healthy."""
    port = free_port()
    base_url = f"{'https' if tls else 'http'}://{HOST}:{port}"
    pair = certs.server(SERVICE)
    config = ServerConfig(
        variant=variant,
        port=port,
        base_url=base_url,
        certfile=str(pair.cert_path) if tls else None,
        keyfile=str(pair.key_path) if tls else None,
        jwks=realm.keys.jwks,
        db=db,
    )
    config_path = work / f"{variant}.json"
    config.write(config_path)
    (work / "logs").mkdir(exist_ok=True)
    process = ManagedProcess(
        f"endpoint-{variant}",
        [sys.executable, str(Path(__file__).resolve()), "--serve", str(config_path)],
        env=os.environ,
        log_dir=work / "logs",
    )
    process.start()
    process.wait_healthy(
        f"{base_url}/health", ca_file=certs.ca.cert_path, timeout=SERVER_START_SECONDS
    )
    return process, base_url


# ------------------------------------------------------------------ measuring


@dataclass(frozen=True)
class Summary:
    count: int
    median: float
    p99: float

    @classmethod
    def of(cls, samples: Sequence[float]) -> Summary:
        return cls(len(samples), statistics.median(samples), percentile(samples, 99))


def percentile(samples: Sequence[float], q: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(samples)
    rank = max(1, math.ceil(len(ordered) * q / 100))
    return ordered[rank - 1]


async def time_each(
    items: Iterable[T], step: Callable[[T], Awaitable[object]]
) -> list[float]:
    """Microseconds ``step`` took for each item, one after the other."""
    samples = []
    for item in items:
        started = time.perf_counter_ns()
        await step(item)
        samples.append((time.perf_counter_ns() - started) / 1_000)
    return samples


def time_each_sync(items: Iterable[T], step: Callable[[T], object]) -> list[float]:
    samples = []
    for item in items:
        started = time.perf_counter_ns()
        step(item)
        samples.append((time.perf_counter_ns() - started) / 1_000)
    return samples


@dataclass(frozen=True)
class InProcess:
    database: str
    token_bytes: int
    body_bytes: int
    admit: Summary
    token: Summary
    token_first: Summary
    proof: Summary
    replay: Summary
    making_proof: Summary


async def measure_in_process(
    realm: Realm, db: DbConfig, iterations: int, warmup: int
) -> InProcess:
    """The gate and its three costly parts, called directly, in this process."""
    key = DpopKey()
    base_url = f"https://{HOST}:8443"
    url = base_url + RPC_PATH
    async with open_security(db, realm.keys.jwks) as security:
        server = await security.database.fetchval(
            "SELECT 'PostgreSQL ' || current_setting('server_version')"
            " || ' over ' || version FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
        )
        for request in prepare(realm, key, base_url, warmup):
            await security.gate.admit(request.arrival(base_url))

        arrivals = [
            r.arrival(base_url) for r in prepare(realm, key, base_url, iterations)
        ]
        admit = await time_each(arrivals, security.gate.admit)

        token = arrivals[0].authorization[0].removeprefix("DPoP ")
        token_only = await time_each([token] * iterations, security.verifier.verify)
        # A token seen for the first time: the signature and claims are
        # checked in full (each caller pays this once per token, per replica).
        new_tokens = [realm.token(key) for _ in range(iterations)]
        token_first = await time_each(new_tokens, security.verifier.verify)

        fresh = prepare(realm, key, base_url, iterations)
        proof_only = time_each_sync(
            fresh,
            lambda r: security.proofs.verify(
                r.proof, method="POST", url=url, access_token=r.token, body=r.body
            ),
        )

        expires_at = time.time() + 65
        jtis = [uuid.uuid4().hex for _ in range(iterations)]
        replay_only = await time_each(
            jtis, lambda jti: security.replay.claim(jti, expires_at)
        )

    body = fresh[0].body
    making = time_each_sync(
        range(iterations),
        lambda _: key.proof("POST", url, access_token=token, body=body),
    )
    return InProcess(
        database=str(server),
        token_bytes=len(token),
        body_bytes=len(body),
        admit=Summary.of(admit),
        token=Summary.of(token_only),
        token_first=Summary.of(token_first),
        proof=Summary.of(proof_only),
        replay=Summary.of(replay_only),
        making_proof=Summary.of(making),
    )


@dataclass(frozen=True)
class Server:
    """One endpoint variant, running in its own process."""

    variant: str
    base_url: str
    pid: int | None


@dataclass(frozen=True)
class Run:
    """One variant driven once: wall time, CPU time, latencies, failures."""

    variant: str
    seconds: float
    server_cpu: float | None
    client_cpu: float
    latencies_ms: list[float]
    failures: list[str]

    @property
    def per_second(self) -> float:
        return len(self.latencies_ms) / self.seconds

    @property
    def latency(self) -> Summary:
        return Summary.of(self.latencies_ms)

    @property
    def server_cpu_ms(self) -> float | None:
        """Server CPU per request (its process only, not PostgreSQL's)."""
        if self.server_cpu is None:
            return None
        return self.server_cpu * 1000 / len(self.latencies_ms)

    @property
    def client_cpu_ms(self) -> float:
        return self.client_cpu * 1000 / len(self.latencies_ms)


def cpu_seconds(pid: int | None) -> float | None:
    """User and system CPU time a process has used, from /proc; None elsewhere."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # After the command name: state, ppid, ... utime and stime at 11 and 12.
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def drive(
    server: Server, clients: Sequence[httpx.AsyncClient], requests: list[Prepared]
) -> Run:
    """Send ``requests`` through ``clients``, one request in flight per client."""
    url = server.base_url + RPC_PATH
    pending = iter(requests)
    latencies: list[float] = []
    failures: list[str] = []

    async def worker(client: httpx.AsyncClient) -> None:
        for request in pending:
            headers = request.headers
            started = time.perf_counter_ns()
            try:
                response = await client.post(url, content=request.body, headers=headers)
                ok = response.status_code == 200 and "result" in response.json()
            except (httpx.HTTPError, ValueError) as exc:
                failures.append(type(exc).__name__)
                continue
            latencies.append((time.perf_counter_ns() - started) / 1_000_000)
            if not ok:
                failures.append(f"{response.status_code} {response.text[:200]}")

    server_cpu_before = cpu_seconds(server.pid)
    client_cpu_before = time.process_time()
    started = time.perf_counter()
    try:
        async with asyncio.timeout(ROUND_SECONDS), asyncio.TaskGroup() as group:
            for client in clients:
                group.create_task(worker(client))
    except TimeoutError:
        raise SystemExit(
            f"a round of {len(requests)} requests took over {ROUND_SECONDS:.0f} s,"
            " longer than its proofs stay fresh; lower --requests"
        ) from None
    seconds = time.perf_counter() - started
    client_cpu = time.process_time() - client_cpu_before
    server_cpu_after = cpu_seconds(server.pid)
    server_cpu = None
    if server_cpu_before is not None and server_cpu_after is not None:
        server_cpu = server_cpu_after - server_cpu_before
    return Run(server.variant, seconds, server_cpu, client_cpu, latencies, failures)


class EndpointFailed(Exception):
    def __init__(self, variant: str, failure: str) -> None:
        super().__init__(f"the {variant} endpoint failed: {failure}")
        self.variant = variant


@dataclass(frozen=True)
class Endpoints:
    loaded: list[Run]
    one_at_a_time: list[Run]

    def failures(self) -> list[str]:
        return [f for run in self.loaded + self.one_at_a_time for f in run.failures]


async def measure_endpoints(
    servers: dict[str, Server],
    realm: Realm,
    ca_file: Path,
    args: argparse.Namespace,
) -> Endpoints:
    """Both variants, alternated round by round: under load, then one at a time."""
    key = DpopKey()
    loaded: list[Run] = []
    single: list[Run] = []
    async with AsyncExitStack() as stack:
        clients = {
            variant: [
                await stack.enter_async_context(http_client(ca_file))
                for _ in range(args.concurrency)
            ]
            for variant in VARIANTS
        }

        async def run(variant: str, count: int, concurrency: int) -> Run:
            server = servers[variant]
            requests = prepare(realm, key, server.base_url, count)
            return await drive(server, clients[variant][:concurrency], requests)

        for variant in VARIANTS:
            # Connections, the database pool and lazy imports, all warmed up;
            # and an endpoint that does not answer as it should stops the run.
            warmup = await run(variant, max(args.warmup, 1), args.concurrency)
            if warmup.failures:
                raise EndpointFailed(variant, warmup.failures[0])
        for _ in range(args.rounds):
            for variant in VARIANTS:
                loaded.append(await run(variant, args.requests, args.concurrency))
        for _ in range(args.rounds if args.latency_requests else 0):
            for variant in VARIANTS:
                single.append(await run(variant, args.latency_requests, 1))
    return Endpoints(loaded, single)


def http_client(ca_file: Path) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        verify=client_context(ca_file),
        limits=httpx.Limits(max_connections=1),
        timeout=10.0,
    )


# ------------------------------------------------------------------ reporting


def say(line: str = "") -> None:
    print(line, flush=True)


def us(value: float) -> str:
    return f"{value:,.0f} µs"


def report_in_process(result: InProcess, args: argparse.Namespace) -> None:
    say(
        f"In process: SecurityGate.admit(), {args.iterations:,} requests"
        f" after {args.warmup:,} warm-up"
    )
    rows = [
        ("admit, the whole stack", result.admit),
        ("token verification alone", result.token),
        ("  the token's first use", result.token_first),
        ("proof verification alone", result.proof),
        ("replay claim alone (round trip)", result.replay),
    ]
    for label, summary in rows:
        say(f"  {label:<32} median {us(summary.median):>9}   p99 {us(summary.p99):>9}")
    parts = result.token.median + result.proof.median + result.replay.median
    say(
        f"  the three parts alone add up to {us(parts)}"
        f" of admit's {us(result.admit.median)}"
    )
    say(
        "  caller's side, not included above: making a proof, median"
        f" {us(result.making_proof.median)}"
    )


@dataclass(frozen=True)
class Medians:
    """A variant's figures, each the median over its rounds."""

    per_second: float
    p50: float
    p99: float
    server_cpu_ms: float | None
    client_cpu_ms: float

    @classmethod
    def of(cls, runs: Sequence[Run], variant: str) -> Medians:
        mine = [run for run in runs if run.variant == variant]
        server_cpu = [run.server_cpu_ms for run in mine]
        return cls(
            per_second=statistics.median(run.per_second for run in mine),
            p50=statistics.median(run.latency.median for run in mine),
            p99=statistics.median(run.latency.p99 for run in mine),
            server_cpu_ms=None
            if None in server_cpu
            else statistics.median(c for c in server_cpu if c is not None),
            client_cpu_ms=statistics.median(run.client_cpu_ms for run in mine),
        )


def row(label: str, variant: str, figures: Run | Medians) -> str:
    if isinstance(figures, Run):
        latency = figures.latency
        p50, p99 = latency.median, latency.p99
    else:
        p50, p99 = figures.p50, figures.p99
    server = "?" if figures.server_cpu_ms is None else f"{figures.server_cpu_ms:.2f}"
    return (
        f"  {label:<7}{variant:<8}{figures.per_second:>7,.0f}{p50:>8.2f}{p99:>8.2f}"
        f"{server:>12}{figures.client_cpu_ms:>12.2f}"
    )


def report_loaded(runs: Sequence[Run], args: argparse.Namespace, scheme: str) -> None:
    say(
        f"Endpoint under load: POST {RPC_PATH} over {scheme}, {args.rounds} rounds x"
        f" {args.requests:,} requests per variant, {args.concurrency} clients"
    )
    say(
        f"  {'round':<7}{'variant':<8}{'req/s':>7}{'p50 ms':>8}{'p99 ms':>8}"
        f"{'server CPU':>12}{'client CPU':>12}"
    )
    for index, run in enumerate(runs):
        say(row(str(index // len(VARIANTS) + 1), run.variant, run))
    medians = {variant: Medians.of(runs, variant) for variant in VARIANTS}
    for variant, figures in medians.items():
        say(row("median", variant, figures))
    noop, stack = medians["no-op"], medians["stack"]
    cpu = ""
    if noop.server_cpu_ms is not None and stack.server_cpu_ms is not None:
        cpu = f", server CPU {stack.server_cpu_ms - noop.server_cpu_ms:+.2f} ms"
    say(
        f"  stack / no-op: throughput x{stack.per_second / noop.per_second:.2f}{cpu}"
        f" per request, p50 {stack.p50 - noop.p50:+.2f} ms"
    )
    say(
        "  CPU: ms per request used by the server process (PostgreSQL's not"
        " included) and by this client"
    )
    say(
        f"  Under load the p50 difference includes queueing: {args.concurrency}"
        " requests in flight wait for each other's extra cost."
    )


def report_single(runs: Sequence[Run], args: argparse.Namespace) -> float | None:
    """Latency one request at a time; returns the p50 difference in ms."""
    if not runs:
        return None
    say(
        f"Endpoint one request at a time: {args.rounds} rounds x"
        f" {args.latency_requests:,} requests per variant"
    )
    medians = {variant: Medians.of(runs, variant) for variant in VARIANTS}
    for variant, figures in medians.items():
        say(f"  {variant:<8} p50 {figures.p50:6.2f} ms   p99 {figures.p99:6.2f} ms")
    difference = medians["stack"].p50 - medians["no-op"].p50
    say(f"  the stack adds {difference:+.2f} ms per request at the median")
    return difference


def report_verdict(in_process: InProcess, hop_ms: float | None) -> None:
    admit_ms = in_process.admit.median / 1000
    checks = [f"in-process admit median {admit_ms:.2f} ms"]
    met = admit_ms < 1.0
    if hop_ms is not None:
        checks.append(f"endpoint p50 difference {hop_ms:+.2f} ms")
        met = met and hop_ms < 1.0
    verdict = "met" if met else "NOT met"
    say(
        f'Verdict: "the stack adds less than 1 ms per hop at the median" is {verdict}'
        f" ({'; '.join(checks)})"
    )


# ---------------------------------------------------------------------- main


def run(args: argparse.Namespace) -> int:
    tls = not args.plain_http
    load = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="mesh-bench-") as folder:
        work = Path(folder)
        certs = ensure_dev_certs(work / "certs", [SERVICE])
        realm = Realm.generate()
        cluster = PostgresCluster(certs.server("postgres"), certs.ca.cert_path)
        try:
            cluster.start()
            db = DbConfig(
                HOST, cluster.port, secrets.token_urlsafe(24), str(certs.ca.cert_path)
            )
            asyncio.run(cluster.create_database(DB_NAME, DB_USER, db.password))

            in_process = asyncio.run(
                measure_in_process(realm, db, args.iterations, args.warmup)
            )
            header(in_process, load)
            report_in_process(in_process, args)
            say()

            endpoints = measure_both(work, certs, realm, db, args, tls=tls)
        finally:
            cluster.stop()

    report_loaded(endpoints.loaded, args, "HTTPS" if tls else "plain HTTP")
    say()
    hop_ms = report_single(endpoints.one_at_a_time, args)
    say()
    report_verdict(in_process, hop_ms)
    failures = endpoints.failures()
    if failures:
        say(f"{len(failures)} requests failed, the figures are not valid; first:")
        for failure in failures[:3]:
            say(f"  {failure}")
        return 1
    return 0


def measure_both(
    work: Path,
    certs: DevCertificates,
    realm: Realm,
    db: DbConfig,
    args: argparse.Namespace,
    *,
    tls: bool,
) -> Endpoints:
    processes: dict[str, ManagedProcess] = {}
    try:
        servers = {}
        for variant in VARIANTS:
            process, base_url = start_server(variant, work, certs, realm, db, tls=tls)
            processes[variant] = process
            servers[variant] = Server(variant, base_url, process.pid)
        return asyncio.run(measure_endpoints(servers, realm, certs.ca.cert_path, args))
    except EndpointFailed as failure:
        log = last_log_entry(processes[failure.variant])
        raise SystemExit(f"{failure}; its last log entry:\n{log}") from None
    finally:
        for process in processes.values():
            process.stop(timeout=10)


def last_log_entry(process: ManagedProcess) -> str:
    """The last line a server logged, its traceback readable if it has one."""
    line = process.log_tail(lines=1)
    try:
        entry = json.loads(line)
    except ValueError:
        return line
    return f"{entry.get('event', '')}\n{entry.get('exception', '')}".strip()


def header(in_process: InProcess, load: tuple[float, float, float]) -> None:
    say(
        f"{os.cpu_count()} CPUs, load average {load[0]:.2f} before the run"
        f" (other work on the machine), Python {platform.python_version()}"
    )
    say(f"{in_process.database} on {HOST} (throwaway cluster: fsync off)")
    say(
        f"RS256 access token of {in_process.token_bytes:,} bytes bound to an ES256"
        f" key; JSON-RPC body of {in_process.body_bytes:,} bytes"
    )
    say()


def bounded(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        value = int(text)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be from {low} to {high}")
        return value

    return parse


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Measure the cost of the security stack per request."
    )
    parser.add_argument(
        "--iterations",
        type=bounded(100, 20_000),
        default=2_000,
        help="in-process calls per measurement (default 2000)",
    )
    parser.add_argument(
        "--warmup",
        type=bounded(0, 5_000),
        default=300,
        help="untimed calls first, in process and per endpoint (default 300)",
    )
    parser.add_argument(
        "--requests",
        type=bounded(100, 10_000),
        default=3_000,
        help="requests per variant per round under load (default 3000)",
    )
    parser.add_argument(
        "--concurrency",
        type=bounded(1, 64),
        default=16,
        help="concurrent clients under load (default 16)",
    )
    parser.add_argument(
        "--rounds",
        type=bounded(1, 9),
        default=3,
        help="rounds, alternating the variants (default 3)",
    )
    parser.add_argument(
        "--latency-requests",
        type=bounded(0, 2_000),
        default=300,
        help="requests per variant per round one at a time; 0 skips (default 300)",
    )
    parser.add_argument(
        "--plain-http",
        action="store_true",
        help="serve the endpoints over HTTP instead of HTTPS",
    )
    parser.add_argument("--serve", type=Path, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.serve:
        return serve(args.serve)
    try:
        return run(args)
    except LauncherError as error:
        # PostgreSQL missing, or a server that would not start: say why, briefly.
        raise SystemExit(f"security_stack: {error}") from None


if __name__ == "__main__":
    sys.exit(main())

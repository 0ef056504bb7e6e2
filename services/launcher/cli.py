"""``a2a-mesh``: run the whole mesh locally, without Docker.

a2a-mesh demo [PATH ...] [--json]   start the mesh, process documents, stop
a2a-mesh up                          run the mesh until Ctrl-C
a2a-mesh certs [OUT_DIR]             make the development CA and certificates

In the container image (see the Dockerfile and docker-compose.yml):
a2a-mesh serve [SERVICE]             run one service
a2a-mesh health [URL]                probe the service's /health
a2a-mesh compose-init [DIR]          make the compose volume's certificates and secrets
a2a-mesh local-aws [DIR]             run and seed the local S3/Secrets Manager
a2a-mesh submit --url URL [PATH ...] process documents through a running mesh
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import ssl
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn

import httpx

from certs import authority
from services.launcher import compose, container, demo
from services.launcher.caller import CallerError, MeshCaller
from services.launcher.errors import LauncherError
from services.launcher.mesh import LocalMesh


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "certs":
        return authority.run(args)
    if args.command in _CONTAINER_COMMANDS:
        return _in_container(args)

    # SIGTERM ends the run like Ctrl-C does: every process started is stopped.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        if args.command == "demo":
            return _demo(args.paths, as_json=args.json, keep=args.keep)
        return _up(keep=args.keep)
    except LauncherError as exc:
        print(f"a2a-mesh: {exc}", file=sys.stderr)
        return 2
    except FileNotFoundError as exc:
        print(f"a2a-mesh: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("a2a-mesh: stopped", file=sys.stderr)
        return 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="a2a-mesh", description="Run the secure document agent mesh locally."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    run_demo = commands.add_parser(
        "demo", help="start the mesh, process documents, print the outcomes, stop"
    )
    run_demo.add_argument(
        "paths",
        nargs="*",
        type=Path,
        help="files or folders to process (default: the bundled samples)",
    )
    run_demo.add_argument("--json", action="store_true", help="print JSON")

    run_up = commands.add_parser(
        "up", help="run the mesh in the foreground until Ctrl-C"
    )
    for command in (run_demo, run_up):
        command.add_argument(
            "--keep",
            action="store_true",
            help="keep the run folder (logs, certificates, credentials) afterwards",
        )

    make_certs = commands.add_parser("certs", help="make the development CA and certs")
    authority.add_arguments(make_certs)
    _container_commands(commands)
    return parser


_CONTAINER_COMMANDS = ("serve", "health", "compose-init", "local-aws", "submit")


def _container_commands(commands: argparse._SubParsersAction[Any]) -> None:
    serve = commands.add_parser("serve", help="run one service (container entry)")
    serve.add_argument(
        "service",
        nargs="?",
        choices=container.SERVICES,
        help="default: MESH_SERVICE_NAME",
    )

    health = commands.add_parser("health", help="probe a service's /health")
    health.add_argument("url", nargs="?", help="default: this service's own")

    init = commands.add_parser(
        "compose-init", help="make the compose volume's certificates and secrets"
    )
    init.add_argument("out_dir", nargs="?", type=Path, default=Path("/mesh"))

    aws = commands.add_parser("local-aws", help="run and seed local S3/Secrets")
    aws.add_argument("folder", nargs="?", type=Path, default=Path("/run/mesh"))
    aws.add_argument(
        "--host",
        default=compose.ALL_INTERFACES,
        help="default: all (inside its container)",
    )
    aws.add_argument("--port", type=int, default=compose.AWS_PORT)
    aws.add_argument("--ready-file", type=Path, default=compose.AWS_READY_FILE)

    submit = commands.add_parser(
        "submit", help="process documents through a running mesh, as a client"
    )
    submit.add_argument("--url", required=True, help="the orchestrator's URL")
    submit.add_argument("paths", nargs="*", type=Path)
    submit.add_argument("--token-url", required=True)
    submit.add_argument("--client-id", default=demo.DEMO_CLIENT)
    submit.add_argument("--secret-file", type=Path, required=True)
    submit.add_argument("--ca-file", type=Path, required=True)
    submit.add_argument("--json", action="store_true", help="print JSON")


def _in_container(args: argparse.Namespace) -> int:
    try:
        if args.command == "serve":
            service = args.service or os.environ.get("MESH_SERVICE_NAME", "")
            container.serve(service)  # replaces this process
        if args.command == "health":
            url = args.url or container.health_url(os.environ)
            print(container.probe(url, os.environ))
            return 0
        if args.command == "compose-init":
            for folder in compose.init(args.out_dir):
                print(f"compose-init: {folder}")
            return 0
        if args.command == "local-aws":
            return compose.local_aws(
                args.folder,
                host=args.host,
                port=args.port,
                ready_file=args.ready_file,
            )
        return _submit(args)
    except (container.EntrypointError, LauncherError, OSError) as exc:
        print(f"a2a-mesh {args.command}: {exc}", file=sys.stderr)
        return 2


def _submit(args: argparse.Namespace) -> int:
    files = demo.collect(args.paths)
    if not files:
        print("a2a-mesh submit: no documents found", file=sys.stderr)
        return 2
    caller = MeshCaller(
        args.url,
        token_url=args.token_url,
        client_id=args.client_id,
        client_secret=args.secret_file.read_text(encoding="utf-8").strip(),
        ca_file=args.ca_file,
    )

    async def run() -> list[demo.Outcome]:
        async with caller:
            return await demo.process_all(caller, files)

    started = time.perf_counter()
    try:
        outcomes = asyncio.run(run())
    except (CallerError, httpx.HTTPError, ssl.SSLError, ValueError) as exc:
        # The mesh could not be reached or refused the client: say so, once.
        print(f"a2a-mesh submit: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    totals = demo.summary(outcomes, time.perf_counter() - started)
    if args.json:
        demo.print_json(outcomes, totals, sys.stdout)
    else:
        demo.print_table(outcomes, totals, sys.stdout)
    lost = sum(1 for o in outcomes if o.status not in ("completed", "failed"))
    return 1 if lost else 0


def _demo(paths: Sequence[Path], *, as_json: bool, keep: bool) -> int:
    files = demo.collect(paths)
    if not files:
        print("a2a-mesh: no documents found", file=sys.stderr)
        return 2

    _status(f"starting the mesh for {len(files)} document(s)…", quiet=as_json)
    with LocalMesh(keep=keep) as mesh:
        _status("mesh is up; processing", quiet=as_json)
        started = time.perf_counter()
        outcomes = asyncio.run(_process(mesh, files))
        totals = demo.summary(outcomes, time.perf_counter() - started)
    if keep:
        _status(_kept(mesh), quiet=False)

    if as_json:
        demo.print_json(outcomes, totals, sys.stdout)
    else:
        demo.print_table(outcomes, totals, sys.stdout)
    lost = sum(1 for o in outcomes if o.status not in ("completed", "failed"))
    return 1 if lost else 0


async def _process(mesh: LocalMesh, files: Sequence[Path]) -> list[demo.Outcome]:
    async with mesh.caller(demo.DEMO_CLIENT) as caller:
        return await demo.process_all(caller, files)


def _up(*, keep: bool) -> int:
    print("starting the mesh…", file=sys.stderr)
    mesh = LocalMesh(keep=keep)
    try:
        with mesh:
            credentials = _write_credentials(mesh)
            print(_how_to_call(mesh, credentials), flush=True)
            _watch(mesh)
    finally:
        if keep:
            print(f"a2a-mesh: {_kept(mesh)}", file=sys.stderr)
    return 1


def _watch(mesh: LocalMesh) -> None:
    """Return when a process of the mesh has exited, saying which and why."""
    while _all_running(mesh):
        time.sleep(0.5)
    if mesh.database is not None and not mesh.database.alive():
        print("a2a-mesh: PostgreSQL stopped; shutting down", file=sys.stderr)
        print(mesh.database.log_tail(), file=sys.stderr)
        return
    stopped = [name for name, p in mesh.processes.items() if not p.running()]
    print(f"a2a-mesh: {', '.join(stopped)} stopped; shutting down", file=sys.stderr)
    for name in stopped:
        print(mesh.processes[name].log_tail(), file=sys.stderr)


def _all_running(mesh: LocalMesh) -> bool:
    database_up = mesh.database is None or mesh.database.alive()
    return database_up and all(p.running() for p in mesh.processes.values())


def _kept(mesh: LocalMesh) -> str:
    """Where the kept files are: the run folder, and PostgreSQL's, which
    belongs to the postgres user and is for the user to remove."""
    message = f"run folder kept: {mesh.work_dir}"
    if mesh.database is not None and mesh.database.started:
        message += f"; PostgreSQL data kept: {mesh.database.work_dir}"
    return message


def _write_credentials(mesh: LocalMesh) -> Path:
    """The caller clients' secrets, in a file only this user can read."""
    path = mesh.work_dir / "credentials.env"
    callers = (
        "document-processor",
        "viewer",
        "lambda-trigger",
        "mesh-admin",
        "no-roles",
    )
    lines = [
        f"{client.upper().replace('-', '_')}_SECRET={mesh.client_secrets[client]}"
        for client in callers
    ]
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as file:
        file.write("\n".join(lines) + "\n")
    return path


def _how_to_call(mesh: LocalMesh, credentials: Path) -> str:
    return _HOW_TO_CALL.format(
        orchestrator=mesh.url("orchestrator"),
        token_url=mesh.addresses.token_url,
        ca=mesh.ca_file,
        credentials=credentials,
        logs=mesh.log_dir,
    )


_HOW_TO_CALL = """The mesh is running. Press Ctrl-C to stop it.

  orchestrator    {orchestrator}
  token endpoint  {token_url}
  CA certificate  {ca}
  client secrets  {credentials}
  logs            {logs}

Get a token, upload a document, ask for its task:

  export CA={ca} IDP={token_url} MESH={orchestrator}
  . {credentials}
  TOKEN=$(curl -s --cacert $CA -d grant_type=client_credentials \\
      -u "document-processor:$DOCUMENT_PROCESSOR_SECRET" $IDP \\
      | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
  curl -s --cacert $CA -H "Authorization: Bearer $TOKEN" \\
      -F file=@services/launcher/samples/sample_invoice.pdf $MESH/documents
  curl -s --cacert $CA -H "Authorization: Bearer $TOKEN" $MESH/a2a -d \\
      '{{"jsonrpc": "2.0", "id": 1, "method": "get_task_status",
        "params": {{"task_id": "<task_id from the upload>"}}}}'
"""


def _status(message: str, *, quiet: bool) -> None:
    if not quiet:
        print(message, file=sys.stderr)


def _interrupt(signum: int, frame: FrameType | None) -> NoReturn:
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main())

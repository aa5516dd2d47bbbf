"""Entry point of `dockyard`: the process commands (server, agent, up) and the client command groups."""
from __future__ import annotations

import logging
import os
import shlex
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Optional

import typer
from typer.core import TyperGroup

from orchestrator.config import Settings

# the server's HTTP listener (see `server`): seconds an idle kept-alive connection stays open,
# and the accept queue (the kernel caps it at net.core.somaxconn)
KEEP_ALIVE = 120
ACCEPT_BACKLOG = 8192

class _Commands(TyperGroup):
    """The root command group, adding the client commands (get, apply, stack, exec, ...) the first
    time a name is not a process command or the command list is shown. `dockyard agent` thus never
    imports them, nor what they import (httpx's Rich, FastAPI and SQLAlchemy by way of
    orchestrator.errors): ~25 MiB of an agent's resident memory (docs/performance.md, Memory)."""

    _clients_added = False

    def _add_clients(self) -> None:
        if self._clients_added:
            return
        self._clients_added = True
        clients = typer.Typer()
        _register_clients(clients)
        for name, command in typer.main.get_group(clients).commands.items():
            self.commands.setdefault(name, command)

    def get_command(self, ctx, cmd_name):  # type: ignore[no-untyped-def]
        if cmd_name not in self.commands:
            self._add_clients()
        return super().get_command(ctx, cmd_name)

    def list_commands(self, ctx):  # type: ignore[no-untyped-def]
        self._add_clients()
        return super().list_commands(ctx)


class _App(typer.Typer):
    """The `dockyard` console script. `dockyard agent ...` is parsed by orchestrator/cli/light.py
    when it can be (Typer's pydantic-based parsing would stay in the agent's memory, ~8 MiB);
    every other command line, and any the light parser does not take whole, goes to Typer."""

    def __call__(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        if not args and not kwargs and sys.argv[1:2] == ["agent"]:
            from orchestrator.cli import light

            try:
                values = light.parse(agent, sys.argv[2:])
            except light.NotPlain:
                pass
            else:
                try:
                    return agent(**values)
                except typer.Exit as exc:
                    sys.exit(exc.exit_code)
                except typer.BadParameter:
                    pass  # Typer parses again and words the error as it does for any option
        return super().__call__(*args, **kwargs)


app = _App(
    cls=_Commands,
    help="Dockyard: a small container orchestrator. `dockyard up` runs a one-machine cluster.",
    no_args_is_help=True, pretty_exceptions_enable=False, context_settings={"help_option_names": ["-h", "--help"]},
)


def _logging(level: str) -> None:
    logging.basicConfig(level=getattr(logging, level.upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("apscheduler", "httpx", "httpcore", "alembic", "urllib3", "docker"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


HostOpt = typer.Option("127.0.0.1", "--host", envvar="DOCKYARD_HOST", help="address to listen on")
PortOpt = typer.Option(8080, "--port", envvar="DOCKYARD_PORT", help="port to listen on")
DataOpt = typer.Option(Path(".dockyard"), "--data-dir", envvar="DOCKYARD_DATA_DIR", help="where the SQLite file and token files live")
DbOpt = typer.Option(None, "--database-url", envvar="DOCKYARD_DATABASE_URL", help="SQLAlchemy URL, e.g. postgresql+psycopg://… (default: SQLite in the data dir)")
AdminOpt = typer.Option(None, "--admin-token", envvar="DOCKYARD_ADMIN_TOKEN", help="bootstrap admin token (default: generated into DATA_DIR/admin.token)")
JoinOpt = typer.Option(None, "--join-token", envvar="DOCKYARD_JOIN_TOKEN", help="agents' join token (default: generated into DATA_DIR/join.token)")
IntervalOpt = typer.Option(1.0, "--loop-interval", envvar="DOCKYARD_LOOP_INTERVAL", help="seconds between reconcile passes")
TtlOpt = typer.Option(5.0, "--node-ttl", envvar="DOCKYARD_NODE_TTL", help="seconds of heartbeat silence before a node is down")
LeaseOpt = typer.Option(4.0, "--lease-ttl", envvar="DOCKYARD_LEASE_TTL", min=0.5,
                        help="seconds a leader's lease lasts unrenewed: a crashed leader is replaced about this soon")
GraceOpt = typer.Option(1.0, "--node-grace", envvar="DOCKYARD_NODE_GRACE", min=0.0,
                        help="seconds a node whose agent closed its connection has to reconnect before it is down (0: wait for the TTL)")
HbOpt = typer.Option(1.0, "--heartbeat-interval", envvar="DOCKYARD_HEARTBEAT_INTERVAL", help="seconds between agent heartbeats")
HistOpt = typer.Option(10, "--history-limit", envvar="DOCKYARD_HISTORY_LIMIT", help="revisions kept per service")
LogOpt = typer.Option("info", "--log-level", envvar="DOCKYARD_LOG_LEVEL")
TlsCertOpt = typer.Option(None, "--tls-cert", envvar="DOCKYARD_TLS_CERT", help="serve HTTPS with this PEM certificate (chain)")
TlsKeyOpt = typer.Option(None, "--tls-key", envvar="DOCKYARD_TLS_KEY", help="the PEM private key of --tls-cert")
AllowOpt = typer.Option([], "--allow", envvar="DOCKYARD_ALLOW", help="host privileges specs may use (admins only), comma "
                        "separated: privileged, host-network, host-pid, cap:NAME, bind:/host/path (README, Security)")
DockerApiOpt = typer.Option("", "--docker-api", envvar="DOCKYARD_DOCKER_API",
                            help="host:port to serve the Docker Engine API on, for the docker CLI and SDK "
                                 "(docs/docker-api.md); empty: none")
UpDockerApiOpt = typer.Option("127.0.0.1:2375", "--docker-api", envvar="DOCKYARD_DOCKER_API",
                              help="host:port of the Docker Engine API for the docker CLI (empty: none)")
CaOpt = typer.Option(None, "--ca-file", envvar="DOCKYARD_CA_FILE", help="PEM CA bundle to verify the server's TLS certificate")


def _secure(settings: Settings, tls_cert: Optional[Path], tls_key: Optional[Path], allow: list[str]) -> Settings:
    from orchestrator import policy

    if bool(tls_cert) != bool(tls_key):
        raise typer.BadParameter("--tls-cert and --tls-key go together", param_hint="--tls-cert/--tls-key")
    for f in (tls_cert, tls_key):
        if f and not Path(f).is_file():
            raise typer.BadParameter(f"{f} is not a readable file", param_hint="--tls-cert/--tls-key")
    try:
        policy.parse(allow)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--allow")
    settings.tls_cert, settings.tls_key, settings.allow = tls_cert, tls_key, tuple(allow)
    return settings


def _ca(ca_file: Optional[Path]) -> object:
    """httpx's `verify`: the system CAs, or an SSL context trusting the given PEM bundle."""
    import ssl

    if ca_file is None:
        return True
    try:
        return ssl.create_default_context(cafile=str(ca_file))
    except (OSError, ssl.SSLError) as exc:
        raise typer.BadParameter(f"cannot use {ca_file} as a CA bundle: {exc}", param_hint="--ca-file")


def _settings(host, port, data_dir, database_url, admin_token, join_token, loop_interval, node_ttl,
              heartbeat_interval, history_limit, log_level, lease_ttl=4.0) -> Settings:  # type: ignore[no-untyped-def]
    return Settings(host=host, port=port, data_dir=Path(data_dir), database_url=database_url, admin_token=admin_token,
                    join_token=join_token, loop_interval=loop_interval, node_ttl=node_ttl, lease_ttl=lease_ttl,
                    heartbeat_interval=heartbeat_interval, history_limit=history_limit, log_level=log_level)


def _serve(settings: Settings, on_ready=None) -> None:  # type: ignore[no-untyped-def]
    import uvicorn

    from orchestrator import runtime
    from orchestrator.api.app import create_app
    from orchestrator.errors import DockyardError

    try:
        runtime.preflight(settings)  # e.g. a second server on one SQLite file: a message, not a traceback
        if settings.docker_api:
            from orchestrator.dockerapi.serve import bind

            settings.docker_api_socket = bind(settings.docker_api)  # a taken port stops us here
    except DockyardError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(1)
    app = create_app(settings)
    # Agents keep two connections open (long poll, reports). uvicorn's defaults (keep-alive 5 s,
    # accept backlog 2,048) closed a report connection idle between two of a large cluster's
    # stretched heartbeats, and the 5,000 agents woken together after a rollout then reconnected
    # at once: the accept queue overflowed, and the kernel's SYN retries (1, 3, 7, 15 ... s) made
    # reports wait past a minute. Connections now stay up for several heartbeats.
    config = uvicorn.Config(app, host=settings.host, port=settings.port,
                            log_level="warning", access_log=False, timeout_graceful_shutdown=3,
                            timeout_keep_alive=KEEP_ALIVE, backlog=ACCEPT_BACKLOG,
                            ssl_certfile=settings.tls_cert, ssl_keyfile=settings.tls_key)

    class Server(uvicorn.Server):
        def handle_exit(self, sig, frame):  # type: ignore[no-untyped-def]
            super().handle_exit(sig, frame)
            st = getattr(app.state, "dy", None)
            if st is not None:  # the agents' long polls answer now (hub.close_polls), from a thread:
                # a signal handler must not wait for the hub's lock, which this thread may hold
                threading.Thread(target=st.hub.close_polls, daemon=True).start()

    server = Server(config)
    if on_ready is not None:
        def watch() -> None:
            while not server.started:
                if server.should_exit:
                    return
                time.sleep(0.05)
            on_ready()
        threading.Thread(target=watch, daemon=True).start()
    server.run()
    if not server.started:
        raise typer.Exit(1)


@app.command()
def server(host: str = HostOpt, port: int = PortOpt, data_dir: Path = DataOpt, database_url: Optional[str] = DbOpt,
           admin_token: Optional[str] = AdminOpt, join_token: Optional[str] = JoinOpt, loop_interval: float = IntervalOpt,
           node_ttl: float = TtlOpt, heartbeat_interval: float = HbOpt, history_limit: int = HistOpt,
           lease_ttl: float = LeaseOpt, log_level: str = LogOpt, tls_cert: Optional[Path] = TlsCertOpt, tls_key: Optional[Path] = TlsKeyOpt,
           allow: list[str] = AllowOpt, docker_api: str = DockerApiOpt, node_grace: float = GraceOpt) -> None:
    """Run the Dockyard server (API + reconcile loop).

    Example: dockyard server --port 8080 --data-dir /var/lib/dockyard --tls-cert cert.pem --tls-key key.pem
    """
    _logging(log_level)
    settings = _secure(_settings(host, port, data_dir, database_url, admin_token, join_token, loop_interval, node_ttl,
                                 heartbeat_interval, history_limit, log_level, lease_ttl), tls_cert, tls_key, allow)
    settings.docker_api, settings.node_grace = docker_api, node_grace
    _serve(settings)


def _parse_labels(labels: list[str]) -> dict[str, str]:
    out = {}
    for item in labels:
        k, sep, v = item.partition("=")
        if not sep or not k:
            raise typer.BadParameter(f"label {item!r} must look like key=value")
        out[k] = v
    return out


GwTimeoutOpt = typer.Option(60.0, "--gateway-timeout", envvar="DOCKYARD_GATEWAY_TIMEOUT", min=0.1, max=3600,
                            help="seconds the gateway waits for a backend's answer before 504")
AccessLogOpt = typer.Option(False, "--gateway-access-log", envvar="DOCKYARD_GATEWAY_ACCESS_LOG",
                            help="log one line per request the gateway answers (with the namespace that served it)")
DrainOpt = typer.Option(2.0, "--drain-seconds", envvar="DOCKYARD_DRAIN_SECONDS", min=0, max=3600,
                        help="seconds a routed container keeps serving after it left the gateways' routes, before SIGTERM")

MetricsOpt = typer.Option(5.0, "--metrics-interval", envvar="DOCKYARD_METRICS_INTERVAL", min=0, max=3600,
                          help="seconds between the agent's reports of container CPU/memory and gateway traffic (0: none)")


@app.command()
def agent(server_url: str = typer.Option("http://127.0.0.1:8080", "--server", envvar="DOCKYARD_SERVER", help="server URL"),
          join_token: Optional[str] = typer.Option(None, "--join-token", envvar="DOCKYARD_JOIN_TOKEN"),
          node_name: str = typer.Option(socket.gethostname().lower(), "--node-name", envvar="DOCKYARD_NODE_NAME"),
          label: list[str] = typer.Option([], "--label", envvar="DOCKYARD_LABEL", help="node label k=v (repeatable)"),
          cpus: Optional[float] = typer.Option(None, "--cpus", envvar="DOCKYARD_CPUS", help="override the CPU capacity docker reports"),
          memory: Optional[str] = typer.Option(None, "--memory", envvar="DOCKYARD_MEMORY", help="override the memory capacity (e.g. 8Gi)"),
          address: str = typer.Option("", "--address", envvar="DOCKYARD_ADDRESS", help="address other hosts reach this node at"),
          listen: str = typer.Option("127.0.0.1:0", "--listen", envvar="DOCKYARD_AGENT_LISTEN", help="host:port of the agent's small API (logs)"),
          concurrency: int = typer.Option(8, "--concurrency", envvar="DOCKYARD_AGENT_CONCURRENCY", help="containers started in parallel"),
          gateway_listen: str = typer.Option("", "--gateway-listen", envvar="DOCKYARD_GATEWAY_LISTEN",
                                             help="host:port of this node's gateway to exposed services, e.g. 0.0.0.0:8000 (empty: none)"),
          drain_seconds: float = DrainOpt, gateway_timeout: float = GwTimeoutOpt,
          gateway_access_log: bool = AccessLogOpt, metrics_interval: float = MetricsOpt,
          log_level: str = LogOpt, ca_file: Optional[Path] = CaOpt) -> None:
    """Run an agent that makes the local Docker engine run what the server assigns to this node.

    Example: dockyard agent --server http://10.0.0.1:8080 --join-token $(cat .dockyard/join.token) --label zone=a
    """
    from agent.main import AgentConfig, run_agent

    _logging(log_level)
    if not join_token:
        typer.echo("error: a join token is needed (--join-token or DOCKYARD_JOIN_TOKEN)", err=True)
        raise typer.Exit(2)
    mem = None
    if memory:
        from orchestrator.spec import parse_memory  # pydantic's models come with it: only when given

        try:
            mem = parse_memory(memory)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--memory")
    cfg = AgentConfig(server=server_url.rstrip("/"), join_token=join_token, node_name=node_name,
                      labels=_parse_labels(label), cpus=cpus, memory=mem, address=address, listen=listen,
                      concurrency=concurrency, verify=_ca(ca_file), gateway_listen=gateway_listen,
                      drain_seconds=drain_seconds, gateway_timeout=gateway_timeout,
                      gateway_access_log=gateway_access_log, metrics_interval=metrics_interval)
    sys.exit(run_agent(cfg))


def _dockyard_command() -> str:
    """An absolute path to this `dockyard`, so the line printed by `up` works from any directory."""
    argv0 = Path(sys.argv[0])
    if argv0.name == "dockyard" and argv0.is_file():
        return str(argv0.absolute())
    beside = Path(sys.executable).parent / "dockyard"
    return str(beside.absolute()) if beside.is_file() else "dockyard"


def up_banner(url: str, node_name: str, token_source: str, admin_file: Path, dockyard: str,
              cacert: Optional[str] = None, docker: Optional[str] = None) -> str:
    """What `dockyard up` prints once it is up: where, which token, and two commands that work as printed.

    token_source is where the admin token came from: "file" (generated into admin_file),
    "env" (DOCKYARD_ADMIN_TOKEN) or "flag" (--admin-token); only "file" has a file to read, so the
    others point curl at the variable. Paths are absolute, so the lines work from any directory; the
    CLI line needs no token at all, because `up` saved it in the CLI's config file.
    """
    q = shlex.quote
    if token_source == "file":
        where, bearer, note = str(admin_file), f"$(cat {q(str(admin_file))})", ""
    elif token_source == "env":
        where, bearer, note = "the DOCKYARD_ADMIN_TOKEN you set", "$DOCKYARD_ADMIN_TOKEN", \
            "  (in a shell where DOCKYARD_ADMIN_TOKEN is set)\n"
    else:
        where, bearer, note = "the one you gave with --admin-token", "$DOCKYARD_ADMIN_TOKEN", \
            "  (with DOCKYARD_ADMIN_TOKEN set to that token)\n"
    tls = f" --cacert {q(cacert)}" if cacert else ""
    return (f"\nDockyard is up at {url}  (node {node_name!r})\n"
            f"Admin token: {where}\n"
            f"Dashboard: {url}/ui/  (log in with the admin token)\n"
            f"Try:\n"
            f"  curl{tls} -H \"Authorization: Bearer {bearer}\" {url}/v1/nodes\n"
            f"{note}"
            f"  {q(dockyard)} get nodes\n"
            + (f"  {docker}\n" if docker else ""))


@app.command()
def up(host: str = HostOpt, port: int = PortOpt, data_dir: Path = DataOpt, database_url: Optional[str] = DbOpt,
       admin_token: Optional[str] = AdminOpt, join_token: Optional[str] = JoinOpt, loop_interval: float = IntervalOpt,
       node_ttl: float = TtlOpt, heartbeat_interval: float = HbOpt, history_limit: int = HistOpt,
       lease_ttl: float = LeaseOpt, node_name: str = typer.Option(socket.gethostname().lower(), "--node-name", envvar="DOCKYARD_NODE_NAME"),
       log_level: str = LogOpt, tls_cert: Optional[Path] = TlsCertOpt, tls_key: Optional[Path] = TlsKeyOpt,
       allow: list[str] = AllowOpt, ca_file: Optional[Path] = CaOpt,
       gateway_listen: str = typer.Option("127.0.0.1:8000", "--gateway-listen", envvar="DOCKYARD_GATEWAY_LISTEN",
                                          help="host:port of the gateway to exposed services (empty: none)"),
       drain_seconds: float = DrainOpt, gateway_timeout: float = GwTimeoutOpt,
       gateway_access_log: bool = AccessLogOpt, docker_api: str = UpDockerApiOpt,
       metrics_interval: float = MetricsOpt) -> None:
    """Run a one-machine cluster: the server plus one local agent with its gateway.

    Example: dockyard up --port 8080
    """
    from agent.main import AgentConfig, run_agent

    _logging(log_level)
    settings = _secure(_settings(host, port, data_dir, database_url, admin_token, join_token, loop_interval, node_ttl,
                                 heartbeat_interval, history_limit, log_level, lease_ttl), tls_cert, tls_key, allow)
    settings.docker_api = docker_api
    scheme = "https" if tls_cert else "http"
    url = f"{scheme}://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}"
    # the local agent trusts --ca-file, else the server's own (self-signed) certificate
    verify = _ca(ca_file or tls_cert)

    def start_agent() -> None:
        token = join_token or (settings.data_dir / "join.token").read_text().strip()
        cfg = AgentConfig(server=url, join_token=token, node_name=node_name, verify=verify,
                          gateway_listen=gateway_listen, drain_seconds=drain_seconds, gateway_timeout=gateway_timeout,
                          gateway_access_log=gateway_access_log, metrics_interval=metrics_interval)
        threading.Thread(target=run_agent, args=(cfg,), daemon=True, name="agent").start()
        admin_file = (settings.data_dir / "admin.token").resolve()
        from orchestrator.cli.config import save_context

        # with TLS, the CLI on this machine trusts what the local agent trusts
        ca = str(Path(ca_file or tls_cert).resolve()) if tls_cert else None
        save_context(url, None if admin_token else admin_file, admin_token, ca)
        source = "file" if not admin_token else "env" if os.environ.get("DOCKYARD_ADMIN_TOKEN") == admin_token else "flag"
        docker = None
        if docker_api:  # the docker CLI's config (the admin token in HttpHeaders), and how to use it
            from orchestrator.dockerapi.serve import cli_line, write_client_config

            secret = admin_token or admin_file.read_text().strip()
            docker = cli_line(docker_api, write_client_config(settings.data_dir, secret), ca)
        typer.echo(up_banner(url, node_name, source, admin_file, _dockyard_command(), ca, docker))

    _serve(settings, on_ready=start_agent)


def _register_clients(app: typer.Typer) -> None:
    """The client command groups, registered when first needed (_Commands)."""
    try:
        from orchestrator.cli import client
    except ImportError:  # client commands are optional while they are being built
        return
    client.register(app)
    from orchestrator.cli import stack_cmd

    stack_cmd.register(app)  # dockyard stack ... (docs/releases.md)
    from orchestrator.cli import exec_cmd  # dockyard exec

    exec_cmd.register(app)

if __name__ == "__main__":
    app()

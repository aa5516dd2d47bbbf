"""The Docker Engine API's listener: a second uvicorn server in the server's own process and
event loop, sharing its State, started and stopped with the main app (orchestrator/api/app.py).

The socket is bound before the main app reports ready, so a taken port is a clear error at
start rather than a missing endpoint later. TLS uses the server's own certificate.
"""
from __future__ import annotations

import asyncio
import json
import logging
import shlex
import socket
from pathlib import Path

import uvicorn

from orchestrator.api.deps import State
from orchestrator.errors import DockyardError

log = logging.getLogger("dockyard.dockerapi")


class _Quiet(uvicorn.Server):
    def install_signal_handlers(self) -> None:  # the main server owns the process's signals
        pass


def parse(listen: str) -> tuple[str, int]:
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise DockyardError(f"--docker-api must look like host:port (e.g. 127.0.0.1:2375), got {listen!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


def bind(listen: str) -> socket.socket:
    host, port = parse(listen)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise DockyardError(f"cannot listen for the Docker API on {listen}: {exc.strerror} "
                            "(choose another with --docker-api HOST:PORT, or --docker-api '' for none)") from None
    sock.listen(128)
    sock.setblocking(False)
    return sock


class DockerAPIServer:
    def __init__(self, st: State, sock: socket.socket):
        from orchestrator.dockerapi.app import create_app

        s = st.settings
        config = uvicorn.Config(create_app(st), log_level="warning", access_log=False, lifespan="off",
                                timeout_graceful_shutdown=2, ssl_certfile=s.tls_cert, ssl_keyfile=s.tls_key)
        self.server, self.sock = _Quiet(config), sock
        self.task: asyncio.Task | None = None

    @property
    def address(self) -> str:
        host, port = self.sock.getsockname()[:2]
        return f"{host}:{port}"

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self.server.serve(sockets=[self.sock]))
        log.info("Docker Engine API listening on %s", self.address)

    async def stop(self) -> None:
        self.server.should_exit = True
        if self.task is not None:
            try:
                await asyncio.wait_for(self.task, 5)
            except (asyncio.TimeoutError, Exception) as exc:  # noqa: BLE001 - shutting down anyway
                log.debug("Docker API listener stopped: %r", exc)


def write_client_config(data_dir: Path, token: str) -> Path:
    """The docker CLI's config directory `dockyard up` writes: config.json sends the admin token
    (HttpHeaders), readable by its owner only, like the token file beside it."""
    where = Path(data_dir).resolve() / "docker"
    where.mkdir(parents=True, exist_ok=True)
    f = where / "config.json"
    f.touch(mode=0o600)
    f.chmod(0o600)
    f.write_text(json.dumps({"HttpHeaders": {"Authorization": f"Bearer {token}"}}, indent=2) + "\n")
    return where


def cli_line(listen: str, config: Path, cacert: str | None = None) -> str:
    """The docker command line `dockyard up` prints (works as printed, from any directory)."""
    host, port = parse(listen)
    host = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    tls = f" --tlsverify --tlscacert {shlex.quote(cacert)}" if cacert else ""
    return f"DOCKER_HOST=tcp://{host}:{port} docker --config {shlex.quote(str(config))}{tls} ps"

"""`dockyard exec [-i] [-t] SERVICE|INSTANCE -- CMD...`: run a command in an instance.

Without -i/-t it is one `POST /v1/instances/{id}/exec`: the output is printed (stdout to
stdout, stderr to stderr) and the command's exit code becomes dockyard's. With -i (keep
stdin open) or -t (a terminal) it is a session over the WebSocket
`/v1/instances/{id}/exec/ws` (orchestrator/api/exec.py says the protocol). A service name
picks one of its running instances, a ready one first.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import threading
from typing import Any, List

import typer

from orchestrator.cli.client import CliError, client, command, complete_services, fail

PANEL = "Observe"
TIMED_OUT = 124  # as timeout(1)


def pick_instance(target: str) -> dict:
    """The instance to run in: `target` as an instance id, else a running instance of the service."""
    c = client()
    one = c.get(f"/v1/instances/{target}", ok404=True)
    if one is not None:
        return one
    insts = c.get(f"/v1/services/{target}/instances", ok404=True)
    if insts is None:
        raise fail(f"no service or instance named {target!r}", "`dockyard get instances` lists them")
    running = [i for i in insts if i.get("state") in ("running", "healthy", "unhealthy") and i.get("node")]
    if not running:
        raise fail(f"service {target!r} has no running instance", f"`dockyard get instances -s {target}`")
    running.sort(key=lambda i: (i.get("healthy") is False, i["slot"], i["id"]))
    return running[0]


def _ws_url(base: str, path: str) -> str:
    return ("wss://" + base[len("https://"):] if base.startswith("https://")
            else "ws://" + base[len("http://"):] if base.startswith("http://") else base) + path


def _interactive(inst: dict, cmd: list[str], tty: bool) -> int:
    from websockets.sync.client import connect

    c = client()
    path, _ = c.in_namespace(f"/v1/instances/{inst['id']}/exec/ws", {})
    headers = {"Authorization": f"Bearer {c.conn.token}"} if c.conn.token else {}
    ssl_ctx = None
    if c.conn.url.startswith("https://"):
        import ssl

        ssl_ctx = ssl.create_default_context(cafile=c.conn.ca_file) if c.conn.ca_file else ssl.create_default_context()
    cols, rows = shutil.get_terminal_size((80, 24))
    try:
        ws = connect(_ws_url(c.conn.url, path), additional_headers=headers, ssl=ssl_ctx, max_size=2**22,
                     open_timeout=10)
    except (OSError, Exception) as exc:  # noqa: BLE001 - refused, TLS, handshake
        raise fail(f"cannot open an exec session at {c.conn.url}: {exc}")
    with ws:
        return _session(ws, cmd, tty, cols, rows)


def _session(ws: Any, cmd: list[str], tty: bool, cols: int, rows: int) -> int:
    from websockets.exceptions import ConnectionClosed

    ws.send(json.dumps({"command": cmd, "tty": tty, "cols": cols, "rows": rows}))
    old = None
    if tty and sys.stdin.isatty():
        import termios
        import tty as ttymod

        old = termios.tcgetattr(sys.stdin.fileno())
        ttymod.setraw(sys.stdin.fileno())
        if hasattr(signal, "SIGWINCH"):
            signal.signal(signal.SIGWINCH, lambda *_: _resize(ws))

    def pump_stdin() -> None:
        try:
            while True:
                data = os.read(sys.stdin.fileno(), 4096)
                if not data:
                    ws.send(json.dumps({"eof": True}))
                    return
                ws.send(data)
        except (OSError, ConnectionClosed):
            return

    threading.Thread(target=pump_stdin, daemon=True).start()
    code: int | None = None
    error: dict | None = None
    try:
        for msg in ws:
            if isinstance(msg, bytes):
                out = sys.stderr.buffer if msg[:1] == b"\x02" else sys.stdout.buffer
                out.write(msg[1:])
                out.flush()
                continue
            doc: dict[str, Any] = json.loads(msg)
            if doc.get("type") == "exit":
                code = doc.get("exit_code")
                break
            if doc.get("type") == "error":
                error = doc.get("error") or {}
                break
    except ConnectionClosed:
        pass
    finally:
        if old is not None:
            import termios

            termios.tcsetattr(sys.stdin.fileno(), termios.TCSADRAIN, old)
    if error is not None:
        raise CliError(error.get("message", "exec failed"))
    if code is None:
        raise fail("the exec session ended without an exit code")
    return int(code)


def _resize(ws: Any) -> None:
    cols, rows = shutil.get_terminal_size((80, 24))
    try:
        ws.send(json.dumps({"resize": {"cols": cols, "rows": rows}}))
    except Exception:  # noqa: BLE001 - the session is ending
        pass


@command
def exec_(target: str = typer.Argument(..., help="a service name (one of its running instances) or an instance id",
                                       autocompletion=complete_services),
          cmd: List[str] = typer.Argument(..., help="the command and its arguments, after --"),
          interactive: bool = typer.Option(False, "--interactive", "-i", help="keep stdin open and send it"),
          tty: bool = typer.Option(False, "--tty", "-t", help="a terminal (with -i: an interactive shell)"),
          timeout: float = typer.Option(60.0, "--timeout", min=0.001, max=3600.0,
                                        help="seconds to wait (without -i/-t); then exit 124")) -> None:
    """Run a command in an instance's container; its exit code is dockyard's.

    Example: dockyard exec web -- cat /etc/hostname

    Example: dockyard exec -it web -- sh
    """
    inst = pick_instance(target)
    if interactive or tty:
        raise typer.Exit(_interactive(inst, list(cmd), tty))
    r = client().post(f"/v1/instances/{inst['id']}/exec", {"command": list(cmd), "timeout": timeout},
                      timeout=timeout + 40)
    sys.stdout.write(r.get("stdout", ""))
    sys.stdout.flush()
    sys.stderr.write(r.get("stderr", ""))
    sys.stderr.flush()
    if r.get("timed_out"):
        raise CliError(f"the command did not finish within {timeout:g}s", hints=["raise --timeout"], code=TIMED_OUT)
    raise typer.Exit(int(r["exit_code"]))


def register(app: typer.Typer) -> None:
    app.command("exec", rich_help_panel=PANEL)(exec_)

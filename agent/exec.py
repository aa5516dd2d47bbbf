"""Exec: run a command in one of this node's containers through Docker, for the server to proxy.

Two forms, both behind the agent API's key (agent/api.py routes them here):

- one-shot, `POST /v1/instances/{id}/exec` with a JSON body: runs the command (optionally fed
  `stdin`), waits up to `timeout` seconds, and answers `{"exit_code", "stdout", "stderr",
  "truncated", "timed_out"}`. Output past MAX_OUTPUT bytes per stream is dropped (truncated).
- interactive, the same request with `Connection: Upgrade` / `Upgrade: dockyard-exec`: the
  agent answers 101 and the connection then carries frames both ways (see `frame`), so a
  terminal can send keystrokes and resizes while output streams back; the last frame the agent
  sends is EXIT with the command's exit code.

The frame codec and the request check are pure; `DockerExec` is the thin shell over the Docker
SDK's exec calls. Nothing is kept after a request ends.
"""
from __future__ import annotations

import json
import socket
import struct
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

MAX_OUTPUT = 1 << 20  # bytes kept per stream of a one-shot exec
MAX_STDIN = 1 << 20
MAX_FRAME = 1 << 20
DEFAULT_TIMEOUT, MAX_TIMEOUT = 60.0, 3600.0
UPGRADE = "dockyard-exec"

# frame kinds: server -> agent STDIN, RESIZE, CLOSE_STDIN; agent -> server STDOUT, STDERR, EXIT, ERROR
STDIN, STDOUT, STDERR, EXIT, RESIZE, CLOSE_STDIN, ERROR = 0, 1, 2, 3, 4, 5, 6
_HEAD = struct.Struct(">BI")


class ExecError(ValueError):
    """A bad exec request (the caller's fault: a 400/422 upstream)."""


@dataclass(frozen=True)
class ExecRequest:
    command: list[str]
    tty: bool = False
    stdin: bytes | None = None
    timeout: float = DEFAULT_TIMEOUT
    cols: int = 80
    rows: int = 24


def parse_request(doc: Any) -> ExecRequest:
    """Check an exec body (a dict from JSON); ExecError says what is wrong."""
    if not isinstance(doc, dict):
        raise ExecError("the body must be a JSON object with a `command` list")
    cmd = doc.get("command")
    if not isinstance(cmd, list) or not cmd or len(cmd) > 256 or not all(isinstance(c, str) for c in cmd):
        raise ExecError("command must be a non-empty list of at most 256 strings")
    if any(len(c) > 65536 or "\x00" in c for c in cmd):
        raise ExecError("a command argument is too long or contains a NUL byte")
    stdin = doc.get("stdin")
    if stdin is not None and (not isinstance(stdin, str) or len(stdin) > MAX_STDIN):
        raise ExecError(f"stdin must be a string of at most {MAX_STDIN} characters")
    timeout = doc.get("timeout", DEFAULT_TIMEOUT)
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout <= MAX_TIMEOUT:
        raise ExecError(f"timeout must be a number of seconds in (0, {MAX_TIMEOUT:g}]")
    size = []
    for k, default in (("cols", 80), ("rows", 24)):
        v = doc.get(k, default)
        if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 1000:
            raise ExecError(f"{k} must be an integer from 1 to 1000")
        size.append(v)
    return ExecRequest(command=list(cmd), tty=bool(doc.get("tty", False)),
                       stdin=stdin.encode() if stdin is not None else None, timeout=float(timeout),
                       cols=size[0], rows=size[1])


def frame(kind: int, payload: bytes = b"") -> bytes:
    return _HEAD.pack(kind, len(payload)) + payload


class FrameReader:
    """Incremental frame parser: feed bytes, take whole (kind, payload) frames."""

    def __init__(self) -> None:
        self.buf = b""

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        self.buf += data
        out = []
        while len(self.buf) >= _HEAD.size:
            kind, n = _HEAD.unpack_from(self.buf)
            if n > MAX_FRAME:
                raise ExecError(f"frame of {n} bytes is over the {MAX_FRAME} limit")
            if len(self.buf) < _HEAD.size + n:
                break
            out.append((kind, self.buf[_HEAD.size:_HEAD.size + n]))
            self.buf = self.buf[_HEAD.size + n:]
        return out


def docker_frames(buf: bytes) -> tuple[list[tuple[int, bytes]], bytes]:
    """Split Docker's multiplexed stream (8-byte header: stream, 0, 0, 0, size) into (stream, data)
    frames; returns the frames and the incomplete rest."""
    out = []
    while len(buf) >= 8:
        stream, n = buf[0], struct.unpack(">I", buf[4:8])[0]
        if len(buf) < 8 + n:
            break
        out.append((STDERR if stream == 2 else STDOUT, buf[8:8 + n]))
        buf = buf[8 + n:]
    return out, buf


class DockerExec:
    """One exec in a container: create, start (a raw socket), resize, exit code."""

    def __init__(self, api: Any, container_id: str, req: ExecRequest, interactive: bool):
        self.api, self.req = api, req
        self.exec_id = api.exec_create(container_id, req.command, stdin=interactive or req.stdin is not None,
                                       tty=req.tty, stdout=True, stderr=True)["Id"]
        raw = api.exec_start(self.exec_id, socket=True, tty=req.tty)
        self.sock: socket.socket = getattr(raw, "_sock", raw)
        self._keep = raw  # holds the HTTP response that owns the socket
        if req.tty:
            self.resize(req.cols, req.rows)

    def resize(self, cols: int, rows: int) -> None:
        try:
            self.api.exec_resize(self.exec_id, height=rows, width=cols)
        except Exception:  # noqa: BLE001 - the process may not have started or may be gone
            pass

    def write(self, data: bytes) -> None:
        self.sock.sendall(data)

    def close_stdin(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def chunks(self, deadline: float | None) -> Any:
        """(stream, bytes) until the output ends; socket.timeout when the deadline passes."""
        rest = b""
        while True:
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise socket.timeout("exec timed out")
                self.sock.settimeout(left)
            else:
                self.sock.settimeout(None)
            data = self.sock.recv(65536)
            if not data:
                return
            if self.req.tty:
                yield STDOUT, data
            else:
                frames, rest = docker_frames(rest + data)
                yield from frames

    def exit_code(self) -> int | None:
        for _ in range(50):  # the output can end a moment before Docker records the exit
            info = self.api.exec_inspect(self.exec_id)
            if not info.get("Running"):
                return info.get("ExitCode")
            time.sleep(0.02)
        return None

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


def run_once(api: Any, container_id: str, req: ExecRequest) -> dict:
    """The one-shot form: run, collect output (capped), return the answer's body."""
    ex = DockerExec(api, container_id, req, interactive=False)
    out = {STDOUT: bytearray(), STDERR: bytearray()}
    truncated = timed_out = False
    try:
        if req.stdin is not None:
            ex.write(req.stdin)
            ex.close_stdin()
        try:
            for stream, data in ex.chunks(time.monotonic() + req.timeout):
                room = MAX_OUTPUT - len(out[stream])
                truncated |= len(data) > room
                out[stream] += data[:max(room, 0)]
        except socket.timeout:
            timed_out = True
        code = None if timed_out else ex.exit_code()
    finally:
        ex.close()
    return {"exit_code": code, "stdout": out[STDOUT].decode("utf-8", "replace"),
            "stderr": out[STDERR].decode("utf-8", "replace"), "truncated": truncated, "timed_out": timed_out}


def run_interactive(api: Any, container_id: str, req: ExecRequest, conn: socket.socket,
                    send: Callable[[bytes], None]) -> None:
    """The upgraded form: frames from `conn` drive stdin and resizes; output goes out through `send`
    as frames, then EXIT. Ends when the command's output ends or the peer hangs up."""
    ex = DockerExec(api, container_id, req, interactive=True)
    done = threading.Event()

    def pump_in() -> None:
        reader = FrameReader()
        try:
            while not done.is_set():
                data = conn.recv(65536)
                if not data:
                    break
                for kind, payload in reader.feed(data):
                    if kind == STDIN:
                        ex.write(payload)
                    elif kind == RESIZE:
                        size = json.loads(payload or b"{}")
                        ex.resize(int(size.get("cols", 80)), int(size.get("rows", 24)))
                    elif kind == CLOSE_STDIN:
                        ex.close_stdin()
        except (OSError, ValueError):
            pass
        if not done.is_set():  # the peer hung up: end the exec's attach (a tty's shell gets SIGHUP)
            done.set()
            ex.close_stdin()
            try:
                ex.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    t = threading.Thread(target=pump_in, daemon=True, name="exec-in")
    t.start()
    try:
        try:
            for stream, data in ex.chunks(None):
                send(frame(stream, data))
        except OSError:
            pass
        if not done.is_set():
            done.set()
            send(frame(EXIT, json.dumps({"exit_code": ex.exit_code()}).encode()))
    finally:
        done.set()
        ex.close()


MAX_BODY = 3 * MAX_STDIN  # JSON-escaped stdin may be longer than the bytes it carries


def serve(handler: Any, instance_id: str) -> None:
    """Answer `POST /v1/instances/{id}/exec` on the agent API's request handler (agent/api.py)."""
    from agent.driver import DriverError

    try:
        n = int(handler.headers.get("Content-Length") or 0)
    except ValueError:
        n = -1
    if not 0 <= n <= MAX_BODY:
        handler._json(400, "bad_request", f"an exec body needs a Content-Length of at most {MAX_BODY} bytes")
        return
    try:
        req = parse_request(json.loads(handler.rfile.read(n) or b"null"))
    except (ValueError, ExecError) as exc:
        handler._json(422 if isinstance(exc, ExecError) else 400, "validation_error" if isinstance(exc, ExecError)
                      else "bad_request", str(exc) if isinstance(exc, ExecError) else "the body is not JSON")
        return
    owner = handler.owner
    try:
        running = [o for o in owner.driver.list() if o.instance_id == instance_id and o.state == "running"]
    except DriverError as exc:
        handler._json(502, "bad_gateway", f"the Docker engine failed: {exc}")
        return
    if not running:
        handler._json(409 if owner.find_container(instance_id) else 404,
                      "conflict" if owner.find_container(instance_id) else "not_found",
                      f"instance {instance_id!r} has no running container on this node")
        return
    cid = running[0].container_id
    upgrade = (handler.headers.get("Upgrade") or "").lower() == UPGRADE
    try:
        if not upgrade:
            body = json.dumps(run_once(owner.driver.api, cid, req)).encode()
            handler.send_response(200)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(body)))
            handler.end_headers()
            handler.wfile.write(body)
            return
        handler.send_response(101)
        handler.send_header("Connection", "Upgrade")
        handler.send_header("Upgrade", UPGRADE)
        handler.end_headers()
        handler.wfile.flush()
        handler.close_connection = True
        conn = handler.connection
        conn.settimeout(None)  # an idle terminal is not an error; keepalive finds a vanished peer
        lock = threading.Lock()

        def send(data: bytes) -> None:
            with lock:
                handler.wfile.write(data)
                handler.wfile.flush()

        run_interactive(owner.driver.api, cid, req, conn, send)
    except (OSError, socket.timeout):
        pass  # the server hung up
    except Exception as exc:  # noqa: BLE001 - Docker refused the exec (e.g. no such binary)
        text = str(getattr(exc, "explanation", None) or exc)
        if upgrade:
            try:
                handler.wfile.write(frame(ERROR, json.dumps({"message": text}).encode()))
                handler.wfile.flush()
            except OSError:
                pass
        else:
            handler._json(502, "bad_gateway", f"the Docker engine refused the exec: {text}")

"""The client side of `dockyard`: where the server is, how to talk to it, how errors look.

Every client command is wrapped by `command()`, which adds the --server/--token/--ca-file
options (also DOCKYARD_URL / DOCKYARD_TOKEN / DOCKYARD_CA_FILE, then the config file that
`dockyard up` and `dockyard login` write), and turns API errors, refused connections, TLS
failures and usage mistakes into one clear line on stderr and an exit code: 0 ok, 1 error,
2 usage. Never a traceback.
"""
from __future__ import annotations

import functools
import inspect
import os
import ssl
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import httpx
import typer

from orchestrator.cli.config import config_path, load_context, save_context

DEFAULT_URL = "http://127.0.0.1:8080"

# Typer >= 0.20 ships its own copy of Click: take the exception classes from Typer, not `click`.
_MRO = typer.BadParameter.__mro__
UsageError = next(c for c in _MRO if c.__name__ == "UsageError")
ClickException = next(c for c in _MRO if c.__name__ == "ClickException")
PANEL = "Connection"


class CliError(Exception):
    """A failure to report as `error: message` (plus hints) with exit code 1."""

    def __init__(self, message: str, *, hints: list[str] | None = None, code: int = 1):
        super().__init__(message)
        self.message, self.hints, self.code = message, hints or [], code


class ApiError(CliError):
    """The server answered with an error: its message, code and the bad fields."""

    def __init__(self, status: int, code: str, message: str, details: list[dict] | None = None,
                 hints: list[str] | None = None):
        lines = [f"{d.get('field', '?')}: {d.get('problem', '')}" for d in (details or [])]
        super().__init__(message, hints=hints)
        self.status, self.api_code, self.details, self.detail_lines = status, code, details or [], lines
        self.no_route = False  # the server has no such endpoint (404/405 from its router), not a missing object


@dataclass
class Conn:
    url: str
    token: str | None
    url_from: str = "default"
    token_from: str = "none"
    ca_file: str | None = None  # a PEM bundle to verify an HTTPS server with (e.g. a self-signed certificate)
    ca_from: str = "none"


def _source(name: str) -> str | None:
    ctx = _STATE.get("ctx")
    try:
        src = ctx.get_parameter_source(name) if ctx is not None else None
    except (AttributeError, KeyError):
        return None
    return {"COMMANDLINE": "flag", "ENVIRONMENT": "env"}.get(getattr(src, "name", ""))


def resolve(server: str | None, token: str | None, ca_file: str | None = None) -> Conn:
    """Flags, then environment (both given here by Typer), then the config file, then the default."""
    ctx = load_context()
    conn = Conn(DEFAULT_URL, None)
    if ca_file:
        conn.ca_file = str(ca_file)
        conn.ca_from = {"flag": "--ca-file", "env": "DOCKYARD_CA_FILE"}.get(_source("ca_file") or "", "--ca-file")
    elif ctx.get("ca_file"):
        conn.ca_file, conn.ca_from = ctx["ca_file"], f"config file {config_path()}"
    if server:
        conn.url, conn.url_from = server, {"flag": "--server", "env": "DOCKYARD_URL"}.get(_source("server") or "", "--server")
    elif ctx.get("url"):
        conn.url, conn.url_from = ctx["url"], f"config file {config_path()}"
    if token:
        conn.token, conn.token_from = token, {"flag": "--token", "env": "DOCKYARD_TOKEN"}.get(_source("token") or "", "--token")
    elif ctx.get("token"):
        conn.token, conn.token_from = ctx["token"], f"config file {config_path()}"
    elif ctx.get("token_file"):
        path = Path(ctx["token_file"])
        try:
            conn.token = path.read_text().strip()
        except OSError as exc:
            raise CliError(f"cannot read the token file {path} named in {config_path()}: {exc.strerror or exc}",
                           hints=["pass --token, set DOCKYARD_TOKEN, or run `dockyard login`"])
        conn.token_from = f"token file {path}"
    conn.url = conn.url.rstrip("/")
    if "://" not in conn.url:
        conn.url = "http://" + conn.url
    return conn


def _ca_context(path: str, source: str) -> Any:
    try:
        return ssl.create_default_context(cafile=path)
    except (OSError, ssl.SSLError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise CliError(f"cannot use {path} (from {source}) as a CA bundle: {reason}",
                       hints=["--ca-file / DOCKYARD_CA_FILE takes a PEM file: the CA that signed the server's "
                              "certificate, or a self-signed certificate itself"])


class Client:
    """A thin HTTP client: JSON in, JSON out, errors as ApiError/CliError."""

    def __init__(self, conn: Conn, timeout: float = 30.0, transport: httpx.BaseTransport | None = None,
                 namespace: str | None = None):
        self.conn = conn
        self.namespace = namespace if namespace and namespace != "default" else None
        headers = {"Accept": "application/json", "User-Agent": "dockyard-cli"}
        if conn.token:
            headers["Authorization"] = f"Bearer {conn.token}"
        verify = _ca_context(conn.ca_file, conn.ca_from) if conn.ca_file else True
        self.http = httpx.Client(base_url=conn.url, headers=headers, timeout=timeout, transport=transport, verify=verify)

    # -- plain requests ----------------------------------------------------------------
    def request(self, method: str, path: str, *, ok404: bool = False, **kw: Any) -> Any:
        path, kw = self.in_namespace(path, kw)
        with self._errors(method, path):
            r = self.http.request(method, path, **kw)
        if ok404 and r.status_code == 404 and not _no_route(r):
            return None
        if r.status_code >= 400:
            raise self._api_error(r, method, path)
        if not r.content:
            return None
        try:
            return r.json()
        except ValueError:
            return r.text

    def in_namespace(self, path: str, kw: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """With --namespace, the services API of that namespace: /v1/services/... and
        /v1/apply move under /v1/namespaces/NS; instances and events are filtered by it."""
        ns = self.namespace
        if ns is None:
            return path, kw
        if path.startswith("/v1/services") or path == "/v1/apply":
            return f"/v1/namespaces/{ns}{path[3:]}", kw
        if path in ("/v1/instances", "/v1/events"):
            return path, {**kw, "params": {**(kw.get("params") or {}), "namespace": ns}}
        return path, kw

    def get(self, path: str, **kw: Any) -> Any:
        return self.request("GET", path, **kw)

    def put(self, path: str, body: Any, **kw: Any) -> Any:
        return self.request("PUT", path, json=body, **kw)

    def post(self, path: str, body: Any = None, **kw: Any) -> Any:
        return self.request("POST", path, json=body, **kw) if body is not None else self.request("POST", path, **kw)

    def delete(self, path: str, **kw: Any) -> Any:
        return self.request("DELETE", path, **kw)

    # -- streams -----------------------------------------------------------------------
    def stream_lines(self, path: str, params: dict | None = None) -> Iterator[str]:
        """Lines of a streamed answer (logs, SSE), read without a read timeout."""
        timeout = httpx.Timeout(10.0, read=None)
        path, kw = self.in_namespace(path, {"params": params} if params is not None else {})
        params = kw.get("params")
        with self._errors("GET", path):
            with self.http.stream("GET", path, params=params, timeout=timeout) as r:
                if r.status_code >= 400:
                    r.read()
                    raise self._api_error(r, "GET", path)
                yield from r.iter_lines()

    # -- errors ------------------------------------------------------------------------
    def _errors(self, method: str, path: str):  # type: ignore[no-untyped-def]
        url, conn = self.conn.url, self.conn
        hint = f"the server URL came from {self.conn.url_from}; pass --server, set DOCKYARD_URL or run `dockyard login`"

        class _Ctx:
            def __enter__(self) -> None:
                return None

            def __exit__(self, et, exc, tb):  # type: ignore[no-untyped-def]
                if exc is None or isinstance(exc, (CliError, KeyboardInterrupt, GeneratorExit)):
                    return False
                if isinstance(exc, (httpx.ConnectError, httpx.RemoteProtocolError)) and (tls := _tls_error(exc, conn)):
                    raise tls from None
                if isinstance(exc, httpx.ConnectError):
                    raise CliError(f"cannot connect to the Dockyard server at {url}: {_reason(exc)}",
                                   hints=["is it running? (`dockyard up` starts one)", hint]) from None
                if isinstance(exc, httpx.TimeoutException):
                    raise CliError(f"the Dockyard server at {url} did not answer {method} {path} in time") from None
                if isinstance(exc, (httpx.HTTPError, httpx.InvalidURL)):
                    raise CliError(f"talking to the Dockyard server at {url} failed: {exc}", hints=[hint]) from None
                return False

        return _Ctx()

    def _api_error(self, r: httpx.Response, method: str, path: str) -> ApiError:
        try:
            err = r.json().get("error") or {}
        except (ValueError, AttributeError):
            err = {}
        message = err.get("message") or (r.text.strip()[:300] or r.reason_phrase)
        hints: list[str] = []
        if r.status_code == 401:
            hints.append("no token was given: pass --token, set DOCKYARD_TOKEN or run `dockyard login`"
                         if not self.conn.token else
                         f"the token came from {self.conn.token_from}; check it, or run `dockyard login`")
        elif _no_route(r):
            message = f"the server at {self.conn.url} has no endpoint {method} {path.split('?')[0]}"
            hints.append("the server may be older than this command line")
        out = ApiError(r.status_code, err.get("code", "http_error"), message, err.get("details"), hints)
        out.no_route = _no_route(r)
        return out


def _no_route(r: httpx.Response) -> bool:
    """404/405 from the router itself (no such endpoint), not a missing object."""
    if r.status_code == 405:
        return True
    if r.status_code != 404:
        return False
    try:
        return (r.json().get("error") or {}).get("message") == "Not Found"
    except (ValueError, AttributeError):
        return True


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        yield e
        e = e.__cause__ or e.__context__


CA_HINT = ("if the server's certificate is self-signed or from a private CA, pass --ca-file FILE or set "
           "DOCKYARD_CA_FILE (the CA bundle, or the certificate itself)")


def _tls_error(exc: Exception, conn: Conn) -> CliError | None:
    """A clear error for TLS trouble (an untrusted certificate, HTTP and HTTPS mixed up); None otherwise."""
    verify = next((e for e in _chain(exc) if isinstance(e, ssl.SSLCertVerificationError)), None)
    text = " ".join(str(e) for e in _chain(exc))
    if verify is not None or "CERTIFICATE_VERIFY_FAILED" in text:
        reason = getattr(verify, "verify_message", None) or "certificate verify failed"
        hints = []
        if "hostname mismatch" in reason.lower() or "ip address mismatch" in reason.lower():
            host = httpx.URL(conn.url).host
            hints.append(f"the certificate does not name {host}: use an address it names in the URL, or reissue it "
                         "with that name in its subjectAltName")
        elif conn.ca_file:
            hints.append(f"the CA bundle {conn.ca_file} (from {conn.ca_from}) does not vouch for this certificate: "
                         "give --ca-file / DOCKYARD_CA_FILE the CA that signed it, or the certificate itself")
        else:
            hints.append(CA_HINT)
        return CliError(f"cannot verify the TLS certificate of the Dockyard server at {conn.url}: {reason}",
                        hints=hints)
    if conn.url.startswith("https://") and ("WRONG_VERSION_NUMBER" in text or "record layer failure" in text):
        return CliError(f"the server at {conn.url} does not speak HTTPS",
                        hints=[f"use an http:// URL, or start the server with --tls-cert/--tls-key "
                               f"(the URL came from {conn.url_from})"])
    if conn.url.startswith("http://") and isinstance(exc, httpx.RemoteProtocolError):
        return CliError(f"the server at {conn.url} closed the connection without answering",
                        hints=[f"if it serves HTTPS, use an https:// URL (the URL came from {conn.url_from})"])
    return None


def _reason(exc: Exception) -> str:
    text = str(exc)
    if "refused" in text.lower():
        return "connection refused"
    return text or type(exc).__name__


# ------------------------------------------------------------------- command wrapper

_STATE: dict[str, Any] = {}
CaFileOpt = typer.Option(None, "--ca-file", envvar="DOCKYARD_CA_FILE", show_envvar=True, rich_help_panel=PANEL,
                         help="PEM CA bundle (or the self-signed certificate) to verify an https:// server with "
                              "(default: the config file, else the system CAs)")


def client() -> Client:
    """The client for the running command (built from its --server/--token/--ca-file options)."""
    if "client" not in _STATE:
        _STATE["client"] = Client(resolve(_STATE.get("server"), _STATE.get("token"), _STATE.get("ca_file")),
                                  namespace=_STATE.get("namespace"))
    return _STATE["client"]


def fail(message: str, *hints: str) -> CliError:
    return CliError(message, hints=list(hints))


def usage(message: str) -> Exception:
    """A usage mistake (exit code 2), reported with the command's usage line."""
    return UsageError(message, _STATE.get("ctx"))


def report(exc: CliError) -> None:
    from rich.console import Console
    from rich.markup import escape

    err = Console(stderr=True, highlight=False, soft_wrap=True)
    err.print(f"[bold red]error:[/] {escape(exc.message)}")
    for line in getattr(exc, "detail_lines", []):
        err.print(f"  - {escape(line)}")
    for h in exc.hints:
        err.print(f"  [dim]hint:[/] {escape(h)}")


def command(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Add --server/--token/--ca-file to a client command and report its failures cleanly."""
    sig = inspect.signature(fn)
    extra = [
        inspect.Parameter("dy_ctx", inspect.Parameter.KEYWORD_ONLY, annotation=typer.Context),
        inspect.Parameter("server", inspect.Parameter.KEYWORD_ONLY, annotation=Optional[str], default=typer.Option(
            None, "--server", envvar="DOCKYARD_URL", show_envvar=True, rich_help_panel=PANEL,
            help="server URL (default: the config file, else http://127.0.0.1:8080)")),
        inspect.Parameter("token", inspect.Parameter.KEYWORD_ONLY, annotation=Optional[str], default=typer.Option(
            None, "--token", envvar="DOCKYARD_TOKEN", show_envvar=True, rich_help_panel=PANEL,
            help="API token (default: the config file written by `dockyard up` / `dockyard login`)")),
        inspect.Parameter("ca_file", inspect.Parameter.KEYWORD_ONLY, annotation=Optional[str], default=CaFileOpt),
        inspect.Parameter("namespace", inspect.Parameter.KEYWORD_ONLY, annotation=Optional[str], default=typer.Option(
            None, "--namespace", "-n", envvar="DOCKYARD_NAMESPACE", show_envvar=True, rich_help_panel=PANEL,
            help="the namespace (or space) of the services (default: default)")),
    ]

    @functools.wraps(fn)
    def wrapper(*args: Any, server: Optional[str] = None, token: Optional[str] = None, ca_file: Optional[str] = None,
                namespace: Optional[str] = None, dy_ctx: Any = None, **kw: Any) -> Any:
        _STATE.clear()
        _STATE.update(server=server, token=token, ca_file=ca_file, ctx=dy_ctx, namespace=namespace)
        try:
            return fn(*args, **kw)
        except CliError as exc:
            report(exc)
            raise typer.Exit(exc.code)
        except KeyboardInterrupt:
            raise typer.Exit(130)
        except (typer.Exit, typer.Abort, ClickException):
            raise
        except BrokenPipeError:
            raise typer.Exit(1)
        except Exception as exc:  # a bug in the CLI: one line, unless asked for the trace
            if os.environ.get("DOCKYARD_DEBUG"):
                raise
            report(CliError(f"unexpected {type(exc).__name__}: {exc}", hints=["set DOCKYARD_DEBUG=1 for the traceback"]))
            raise typer.Exit(1)
        finally:
            c = _STATE.pop("client", None)
            if c is not None:
                c.http.close()

    wrapper.__signature__ = sig.replace(parameters=[*sig.parameters.values(), *extra])  # type: ignore[attr-defined]
    wrapper.__annotations__ = {**getattr(fn, "__annotations__", {}), "server": Optional[str], "token": Optional[str],
                               "ca_file": Optional[str], "namespace": Optional[str], "dy_ctx": typer.Context}
    return wrapper


def complete_services(incomplete: str) -> list[str]:
    """Shell completion of service names; silent when the server cannot be reached."""
    return _complete("/v1/services", incomplete)


def complete_nodes(incomplete: str) -> list[str]:
    return _complete("/v1/nodes", incomplete)


def complete_tokens(incomplete: str) -> list[str]:
    """Token names (`token rm` takes a name or an id); empty unless the token is an admin's."""
    return _complete("/v1/tokens", incomplete)


def _complete(path: str, incomplete: str) -> list[str]:
    try:
        conn = resolve(os.environ.get("DOCKYARD_URL"), os.environ.get("DOCKYARD_TOKEN"), os.environ.get("DOCKYARD_CA_FILE"))
        c = Client(conn, timeout=2.0)
        items = c.get(path)
        c.http.close()
        return [i["name"] for i in items if i["name"].startswith(incomplete)]
    except Exception:  # noqa: BLE001 - completion must never fail loudly
        return []


# ------------------------------------------------------------------- login + register

def login(server: str = typer.Option(..., "--server", help="server URL, e.g. http://10.0.0.1:8080"),
          token: Optional[str] = typer.Option(None, "--token", help="API token"),
          token_file: Optional[Path] = typer.Option(None, "--token-file", help="read the token from this file each time instead of storing it"),
          ca_file: Optional[Path] = typer.Option(None, "--ca-file", envvar="DOCKYARD_CA_FILE", show_envvar=True,
                                                 help="PEM CA bundle (or the self-signed certificate) of an https:// server; its path is saved too"),
          verify: bool = typer.Option(True, "--verify/--no-verify", help="check the server accepts the token first")) -> None:
    """Save the server URL and token (and CA file) in the config file, for every later command.

    Example: dockyard login --server http://127.0.0.1:8080 --token "$(cat .dockyard/admin.token)"

    Example: dockyard login --server http://127.0.0.1:8080 --token-file .dockyard/admin.token

    Example: dockyard login --server https://dockyard.example:8080 --ca-file ca.pem --token-file admin.token
    """
    if bool(token) == bool(token_file):
        raise usage("give exactly one of --token and --token-file")
    try:
        secret = token or Path(token_file).read_text().strip()  # type: ignore[arg-type]
    except OSError as exc:
        report(CliError(f"cannot read {token_file}: {exc.strerror or exc}"))
        raise typer.Exit(1)
    url = server.rstrip("/")
    if "://" not in url:
        url = "http://" + url
    ca = str(ca_file.resolve()) if ca_file else None
    if verify:
        try:
            c = Client(Conn(url, secret, "--server", "--token", ca, "--ca-file"), timeout=10.0)
        except CliError as exc:
            report(exc)
            raise typer.Exit(1)
        try:
            c.get("/v1/services")
        except CliError as exc:
            report(exc)
            raise typer.Exit(1)
        finally:
            c.http.close()
    save_context(url, token_file.resolve() if token_file else None, None if token_file else secret, ca)
    typer.echo(f"logged in to {url}; saved to {config_path()}")


def register(app: typer.Typer) -> None:
    from orchestrator.cli import compose_cmd, nodes, observe, resources, rollout, tokens

    app.command(rich_help_panel="Client")(login)
    resources.register(app)
    rollout.register(app)
    observe.register(app)
    nodes.register(app)
    tokens.register(app)
    compose_cmd.register(app)
    from orchestrator.cli import usage_cmd  # dockyard top, dockyard rebalance

    usage_cmd.register(app)


def stdout_isatty() -> bool:
    try:
        return sys.stdout.isatty()
    except (AttributeError, ValueError):
        return False

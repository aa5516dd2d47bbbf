"""`dockyard token create|ls|rm` and `dockyard join-token rotate`: who may use the API, which machines may join.

Secrets are printed once, alone on stdout (so `$(dockyard token create ...)` captures just the
secret); what was done and the reminder that the secret is not shown again go to stderr.
The pure helpers (`parse_duration`, `until`) are unit-tested.
"""
from __future__ import annotations

import re
import time
from enum import Enum
from typing import Any, Optional

import typer

from orchestrator.cli import render
from orchestrator.cli.client import ApiError, client, command, complete_tokens, fail
from orchestrator.cli.render import Col, Output, OutputOpt, age, epoch

PANEL = "Cluster"
MAX_LIFETIME = 10 * 365 * 86400  # the server's limit: ten years

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_PART = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")


def parse_duration(text: str) -> float:
    """Seconds from '90s', '30m', '24h', '30d', '2w' or combinations ('1d12h'); a bare number is seconds."""
    t = str(text).strip().lower()
    if re.fullmatch(r"\d+(?:\.\d+)?", t):
        seconds = float(t)
    else:
        parts = _PART.findall(t)
        if not t or "".join(n + u for n, u in parts) != t:
            raise ValueError(f"invalid duration {text!r}: use forms like 30m, 24h, 30d, 2w or 1d12h")
        seconds = sum(float(n) * _UNITS[u] for n, u in parts)
    if seconds <= 0:
        raise ValueError(f"the duration {text!r} must be longer than zero")
    if seconds > MAX_LIFETIME:
        raise ValueError(f"the duration {text!r} is longer than the 10 years (3650d) a token may last")
    return seconds


def _span(secs: float, up: bool = False) -> str:
    """Like `age`; with `up`, whole units are rounded to the nearest (a fresh 24h token is 'in 24h', not 23h)."""
    if up:
        for limit, unit in ((120, 1), (7200, 60), (172800, 3600)):
            if secs < limit:
                return _span(round(secs / unit) * unit)
        return _span(round(secs / 86400) * 86400)
    return render.span(secs)


def until(expires_at: Any, now: float | None = None) -> str:
    """'never', 'in 23h', or 'expired 5m ago'."""
    ts = epoch(expires_at)
    if ts is None:
        return "never"
    left = ts - (time.time() if now is None else now)
    return f"in {_span(left, up=True)}" if left > 0 else f"expired {_span(-left)} ago"


TOKEN_COLS = [
    Col("ID", lambda t: t["id"]),
    Col("NAME", lambda t: t["name"]),
    Col("ROLE", lambda t: t["role"]),
    Col("AGE", lambda t: age(t.get("created_at"))),
    Col("LAST-USED", lambda t: f"{age(t['last_used_at'])} ago" if t.get("last_used_at") else "never"),
    Col("EXPIRES", lambda t: until(t.get("expires_at"))),
    Col("CREATED-AT", lambda t: t.get("created_at"), wide=True),
    Col("EXPIRES-AT", lambda t: t.get("expires_at"), wide=True),
]


class Role(str, Enum):
    viewer = "viewer"
    operator = "operator"
    admin = "admin"


def _duration(value: Optional[str]) -> Optional[float]:
    if value is None:
        return None
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc))


def note(message: str) -> None:
    from rich.console import Console
    from rich.markup import escape

    Console(stderr=True, highlight=False, soft_wrap=True).print(f"[bold]note:[/] {escape(message)}")


def info(message: str) -> None:
    typer.echo(message, err=True)


class SecretFormat(str, Enum):
    json = "json"
    yaml = "yaml"


def _secret_out(answer: dict, secret_key: str, output: Optional[SecretFormat]) -> None:
    """The secret alone on stdout, or with -o json|yaml the whole answer."""
    if output is None:
        typer.echo(answer[secret_key])
    else:
        render.emit(answer, Output(output.value))


SecretOutputOpt = typer.Option(None, "--output", "-o", case_sensitive=False,
                               help="json or yaml: the whole answer, secret included (default: the secret alone)")

token_app = typer.Typer(help="API tokens (admin only): create one for a person or a CI job, list, revoke.",
                        no_args_is_help=True)
join_app = typer.Typer(help="The join token that lets agents into the cluster (admin only).", no_args_is_help=True)


@token_app.command("create")
@command
def create(name: str = typer.Argument(..., help="a unique name; the audit trail names the token by it"),
           role: Role = typer.Option(..., "--role", "-r", case_sensitive=False,
                                     help="viewer (read), operator (also deploy) or admin (everything)"),
           expires_in: Optional[str] = typer.Option(None, "--expires-in", callback=_duration, metavar="DURATION",
                                                    help="lifetime, e.g. 30m, 24h, 30d, 1d12h (default: until revoked)"),
           output: Optional[SecretFormat] = SecretOutputOpt) -> None:
    """Create an API token and print its secret: it is shown only this once.

    The secret alone goes to stdout; what was created, and the reminder, to stderr.

    Example: dockyard token create ci-deployer --role operator --expires-in 30d

    Example: export DOCKYARD_TOKEN=$(dockyard token create alice --role viewer --expires-in 24h)
    """
    body: dict[str, Any] = {"name": name, "role": role.value}
    if expires_in is not None:
        body["expires_in"] = expires_in
    out = client().post("/v1/tokens", body)
    expiry = f"expires {out['expires_at']} ({until(out['expires_at'])})" if out.get("expires_at") else "never expires"
    info(f"token/{out['name']} created: id {out['id']}, role {out['role']}, {expiry}")
    _secret_out(out, "token", output)
    note("the secret is shown only once: the server keeps only its hash. Store it now; if it is lost, "
         f"revoke it (dockyard token rm {out['name']}) and create another")


@token_app.command("ls")
@command
def ls(output: Output = OutputOpt) -> None:
    """List the API tokens: id, name, role, age, last use, expiry. Never a secret.

    Example: dockyard token ls

    Example: dockyard token ls -o json
    """
    render.emit(client().get("/v1/tokens"), output, TOKEN_COLS, empty="no tokens")


@token_app.command("rm")
@command
def rm(tokens: list[str] = typer.Argument(..., help="token ids (tok_...) or names", autocompletion=complete_tokens)) -> None:
    """Revoke tokens at once: every later call with them gets 401.

    The bootstrap admin token (--admin-token or DATA_DIR/admin.token) cannot be revoked here: change it in the server's configuration and restart the server.

    Example: dockyard token rm tok_3f2a9c0d11e4b7a5

    Example: dockyard token rm ci-deployer
    """
    c = client()
    listed: list[dict] | None = None
    for ref in tokens:
        try:
            out = c.delete(f"/v1/tokens/{ref}")
        except ApiError as exc:
            if exc.status != 404 or exc.no_route:
                raise
            listed = c.get("/v1/tokens") if listed is None else listed
            match = next((t for t in listed if t["name"] == ref), None)
            if match is None:
                raise fail(f"no token has the id or name {ref!r}", "`dockyard token ls` lists the tokens")
            out = c.delete(f"/v1/tokens/{match['id']}")
        render.ok(f"token/{out['name']} ({out['id']}) revoked")


@join_app.command("rotate")
@command
def rotate(output: Optional[SecretFormat] = SecretOutputOpt) -> None:
    """Issue a new join token and print it: it is shown only this once.

    The old join token stops admitting nodes at once. Nodes that have joined keep working with their own credentials; an agent that joins from now on (or restarts) needs the new one.

    Example: (umask 077; dockyard join-token rotate > join.token)

    Example: dockyard join-token rotate -o json
    """
    out = client().post("/v1/cluster/join-token/rotate")
    info("join token rotated: the old one no longer admits nodes; joined nodes keep working")
    _secret_out(out, "join_token", output)
    note("the new join token is shown only once: agents that join from now on need it "
         "(--join-token or DOCKYARD_JOIN_TOKEN)")


def register(app: typer.Typer) -> None:
    token_app.command("list", hidden=True)(ls)
    token_app.command("remove", hidden=True)(rm)
    token_app.command("revoke", hidden=True)(rm)
    app.add_typer(token_app, name="token", rich_help_panel=PANEL)
    app.add_typer(token_app, name="tokens", hidden=True)
    app.add_typer(join_app, name="join-token", rich_help_panel=PANEL)

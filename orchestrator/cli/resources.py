"""`dockyard apply`, `scale` and `delete`: changing what should run."""
from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Optional

import typer

from orchestrator.cli import render
from orchestrator.cli.client import ApiError, client, command, complete_services, fail, usage
from orchestrator.cli.plan import DocumentError, parse_documents, plan_delete, plan_service, prepare, render_plan, stack_of

PANEL = "Workloads"


def read_input(path: str) -> tuple[str, str]:
    """(text, a name for messages) of a file, or of stdin for '-'."""
    if path == "-":
        return sys.stdin.read(), "stdin"
    p = Path(path)
    try:
        return p.read_text(encoding="utf-8"), str(p)
    except FileNotFoundError:
        raise fail(f"the file {path} does not exist")
    except IsADirectoryError:
        raise fail(f"{path} is a directory; give a file (or - for stdin)")
    except (OSError, UnicodeDecodeError) as exc:
        raise fail(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}")


def apply_services(items: list[tuple[str, dict]], *, dry_run: bool, prune: bool, take_over: bool = False) -> None:
    """Apply checked (name, body) pairs in one POST /v1/apply: all of them or, on any refusal,
    none. With dry_run the server checks them all (policy, stack owners, versions) and the
    plan is printed. Shared with `compose up`."""
    c = client()
    names = [n for n, _ in items]
    current = {n: c.get(f"/v1/services/{n}", ok404=True) for n in names}
    stale: list[dict] = []
    if prune:
        stack = stack_of(items)
        if not stack:
            raise usage("--prune needs a stack: give --stack NAME or a 'stack' key in the documents")
        stale = [s for s in c.get("/v1/services", params={"stack": stack}) if s["name"] not in names]
    body: dict = {"services": [{"name": n, **b} for n, b in items], "dry_run": dry_run}
    if take_over:
        body["take_over"] = True
    try:
        answer = c.post("/v1/apply", body)
    except ApiError as exc:
        raise refused(exc)
    if dry_run:
        plans = [plan_service(n, current[n], b) for n, b in items] + [plan_delete(s) for s in stale]
        print_plan(render_plan(plans))
        return
    for r in answer["results"]:
        render.ok(result_line(r, current.get(r["name"])))
    for s in stale:
        c.delete(f"/v1/services/{s['name']}")
        render.ok(f"service/{s['name']} deleted (no longer in stack {s['stack']})")


def refused(exc: ApiError) -> ApiError:
    """The server's refusal with each bad field said as `service: field: problem`
    (its paths start ["services", index], which a file's reader does not see)."""
    lines = []
    for d in exc.details:
        path, who = d.get("path"), d.get("service")
        if isinstance(path, list) and path[:1] == ["services"] and len(path) >= 2:
            where = ".".join(str(x) for x in path[2:]) or "service"
            lines.append(f"{who or f'document {int(path[1]) + 1}'}: {where}: {d.get('problem', '')}")
        else:
            lines.append(f"{d.get('field', '?')}: {d.get('problem', '')}")
    exc.detail_lines = lines
    if exc.status == 409 and any(d.get("field", "").endswith(".stack") for d in exc.details):
        exc.hints.append("--take-over moves a service into the stack the file names (or out of its stack)")
    return exc


def result_line(r: dict, before: dict | None) -> str:
    name, svc = r["name"], r["service"]
    if r["action"] == "created":
        return f"service/{name} created"
    if r["action"] == "unchanged":
        return f"service/{name} unchanged"
    if before is not None and svc["stack"] != before.get("stack"):
        moved = f"moved to stack {svc['stack']}" if svc["stack"] else f"moved out of stack {before.get('stack')}"
    else:
        moved = ""
    if before is not None and svc["revision"] != before.get("revision"):
        what = f"revision {svc['revision']}, rolling update started" + (f"; {moved}" if moved else "")
        return f"service/{name} configured ({what})"
    return f"service/{name} configured" + (f" ({moved})" if moved else "")


def print_plan(text: str) -> None:
    from orchestrator.cli.client import stdout_isatty

    if not stdout_isatty():
        typer.echo(text)
        return
    from rich.console import Console
    from rich.markup import escape

    con = Console(highlight=False, soft_wrap=True)
    colours = {"+": "green", "-": "red", "~": "yellow", "=": "dim"}
    for line in text.splitlines():
        mark = line.strip()[:1]
        con.print(f"[{colours[mark]}]{escape(line)}[/]" if mark in colours else escape(line))


@command
def apply(file: str = typer.Option(..., "--filename", "-f", help="manifest file (YAML or JSON), or - for stdin"),
          stack: Optional[str] = typer.Option(None, "--stack", help="stack name for every service in the file"),
          dry_run: bool = typer.Option(False, "--dry-run", help="print what would change (a plan) and change nothing"),
          prune: bool = typer.Option(False, "--prune", help="delete services of the stack that the file no longer lists"),
          take_over: bool = typer.Option(False, "--take-over", help="move services that belong to another stack "
                                         "(or to none) into this file's stack, or out of theirs")) -> None:
    """Create or update services from a manifest. Several documents (YAML ---) form a stack.

    Each document is a service: a 'name' key plus the body of PUT /v1/services/NAME
    (image, command, env, ports, resources, health, update, replicas ...). All documents
    are applied at once (POST /v1/apply): if the server refuses one, none is applied.
    A service that belongs to another stack is refused unless --take-over.

    Example: dockyard apply -f web.yaml

    Example: dockyard apply -f shop.yaml --stack shop --dry-run

    Example: cat web.json | dockyard apply -f -
    """
    text, source = read_input(file)
    try:
        items = prepare(parse_documents(text, source), stack)
    except DocumentError as exc:
        raise fail(str(exc).replace("\n", "\n  "))
    apply_services(items, dry_run=dry_run, prune=prune, take_over=take_over)


@command
def scale(name: str = typer.Argument(..., help="service name", autocompletion=complete_services),
          replicas: int = typer.Argument(..., min=0, max=10000, help="how many instances")) -> None:
    """Set how many instances of a service run (no new revision, no restarts).

    Example: dockyard scale web 5
    """
    out = client().post(f"/v1/services/{name}/scale", {"replicas": replicas})
    render.ok(f"service/{name} scaled to {out['replicas']}")


delete_app = typer.Typer(help="Delete a service, or every service of a stack.", no_args_is_help=True)
WaitOpt = typer.Option(False, "--wait", help="return only once their containers are gone")
TimeoutOpt = typer.Option(120.0, "--timeout", help="seconds --wait waits at most")


def _wait_gone(names: list[str], timeout: float) -> None:
    c = client()
    deadline = time.monotonic() + timeout
    while True:
        left = [n for n in names if c.get("/v1/instances", params={"service": n, "all": True})]
        if not left:
            return
        if time.monotonic() > deadline:
            raise fail(f"containers of {', '.join(left)} still exist after {timeout:g}s")
        time.sleep(0.5)


@delete_app.command("service")
@command
def delete_service(name: str = typer.Argument(..., help="service name", autocompletion=complete_services),
                   wait: bool = WaitOpt, timeout: float = TimeoutOpt) -> None:
    """Delete a service; its containers are stopped and removed.

    Example: dockyard delete service web --wait
    """
    client().delete(f"/v1/services/{name}")
    render.ok(f"service/{name} deleted")
    if wait:
        _wait_gone([name], timeout)


@delete_app.command("stack")
@command
def delete_stack(name: str = typer.Argument(..., help="stack name"), wait: bool = WaitOpt,
                 timeout: float = TimeoutOpt) -> None:
    """Delete every service of a stack.

    Example: dockyard delete stack shop
    """
    from orchestrator.cli.stack_cmd import path

    c = client()
    services = c.get("/v1/services", params={"stack": name})
    server_side = c.get(path(name), ok404=True) is not None  # installed with releases (docs/releases.md)
    if not services and not server_side:
        raise fail(f"stack {name!r} not found: no service belongs to it", "`dockyard get stacks` lists the stacks")
    for s in services:
        c.delete(f"/v1/services/{s['name']}")
        render.ok(f"service/{s['name']} deleted")
    if server_side:
        c.delete(path(name))  # and its releases
    render.ok(f"stack/{name} deleted ({len(services)} service(s))")
    if wait:
        _wait_gone([s["name"] for s in services], timeout)


def register(app: typer.Typer) -> None:
    from orchestrator.cli import get_cmd

    app.command(rich_help_panel=PANEL)(apply)
    get_cmd.register(app)
    app.command(rich_help_panel=PANEL)(scale)
    app.add_typer(delete_app, name="delete", rich_help_panel=PANEL)
    delete_app.command("services", hidden=True)(delete_service)
    delete_app.command("stacks", hidden=True)(delete_stack)

"""`dockyard space create|rm|ls` (and `get spaces`): namespaces, and spaces — namespaces with a
parent, whose requests the gateway serves from their own services first and their ancestors'
otherwise (docs/namespaces.md)."""
from __future__ import annotations

from typing import Any, Optional

import typer

from orchestrator.cli import render
from orchestrator.cli.client import client, command
from orchestrator.cli.render import Col, Output, OutputOpt, age

PANEL = "Workloads"


def tree_name(ns: dict[str, Any]) -> str:
    """The name indented by its depth (its chain's length), so a list reads as a tree."""
    depth = len(ns.get("chain") or [ns["name"]]) - 1
    return ("  " * (depth - 1) + "└ " if depth else "") + ns["name"]


SPACE_COLS = [
    Col("NAME", tree_name),
    Col("PARENT", lambda n: n.get("parent")),
    Col("SERVICES", lambda n: n.get("services", 0)),
    Col("CHILDREN", lambda n: len(n.get("children") or [])),
    Col("AGE", lambda n: age(n.get("created_at"))),
    Col("FALLBACK", lambda n: " → ".join(n.get("chain") or []), wide=True),
]

space_app = typer.Typer(help="Namespaces and spaces (a namespace with a parent).", no_args_is_help=True)


@command
def create(name: str = typer.Argument(..., help="the new namespace (a DNS label)"),
           parent: Optional[str] = typer.Option(None, "--parent", "-p", help="make it a space of this namespace"),
           output: Output = OutputOpt) -> None:
    """Create a namespace; with --parent, a space that falls back to its parent's services.

    Example: dockyard space create alice --parent dev
    """
    out = client().post("/v1/namespaces", {"name": name, "parent": parent})
    if output != Output.table:
        render.emit(out, output, SPACE_COLS)
        return
    typer.echo(f"namespace/{name} created" + (f" (a space of {parent}: {' → '.join(out['chain'])})" if parent else ""))


@command
def ls(output: Output = OutputOpt) -> None:
    """List namespaces as a tree, each child under its parent.

    Example: dockyard space ls
    """
    render.emit(client().get("/v1/namespaces"), output, SPACE_COLS, empty="no namespaces")


@command
def rm(name: str = typer.Argument(..., help="the namespace to delete"),
       force: bool = typer.Option(False, "--force", help="also delete its child spaces and all their services")) -> None:
    """Delete a namespace and its services; one with child spaces only with --force.

    Their containers are stopped.

    Example: dockyard space rm alice
    """
    out = client().delete(f"/v1/namespaces/{name}", params={"force": "true"} if force else None)
    typer.echo(f"namespace/{name} deleted ({', '.join(out['deleted'])}; {out['services_deleted']} service(s))")


def register(app: typer.Typer, get_app: typer.Typer | None = None) -> None:
    space_app.command("create")(create)
    space_app.command("ls")(ls)
    space_app.command("rm")(rm)
    app.add_typer(space_app, name="space", rich_help_panel=PANEL)
    app.add_typer(space_app, name="namespace", hidden=True)
    if get_app is not None:
        get_app.command("spaces")(ls)
        get_app.command("namespaces", hidden=True)(ls)

"""`dockyard nodes ls|drain|pause|activate|rm`: the machines of the cluster."""
from __future__ import annotations

import time

import typer

from orchestrator.cli import render
from orchestrator.cli.client import client, command, complete_nodes, fail
from orchestrator.cli.get_cmd import NODE_COLS
from orchestrator.cli.render import Output, OutputOpt

PANEL = "Cluster"

nodes_app = typer.Typer(help="List nodes and change their availability: drain, pause, activate, rm.",
                        no_args_is_help=True)
NodeArg = typer.Argument(..., help="node name", autocompletion=complete_nodes)


@nodes_app.command("ls")
@command
def ls(output: Output = OutputOpt) -> None:
    """List the nodes.

    Example: dockyard nodes ls -o wide
    """
    render.emit(client().get("/v1/nodes"), output, NODE_COLS, empty="no nodes")


def _wait_empty(name: str, timeout: float) -> None:
    c = client()
    deadline = time.monotonic() + timeout
    while c.get("/v1/instances", params={"node": name}):
        if time.monotonic() > deadline:
            raise fail(f"node {name} still runs instances after {timeout:g}s")
        time.sleep(0.5)
    render.ok(f"node/{name} has no instances left")


@nodes_app.command("drain")
@command
def drain(name: str = NodeArg,
          wait: bool = typer.Option(False, "--wait", help="return only once its instances have moved away"),
          timeout: float = typer.Option(300.0, "--timeout", help="seconds --wait waits at most")) -> None:
    """Drain a node: move its instances elsewhere and place nothing new on it.

    Example: dockyard nodes drain worker-1 --wait
    """
    client().post(f"/v1/nodes/{name}/drain")
    render.ok(f"node/{name} drained")
    if wait:
        _wait_empty(name, timeout)


@nodes_app.command("pause")
@command
def pause(name: str = NodeArg) -> None:
    """Pause a node: what runs there stays, nothing new is placed on it.

    Example: dockyard nodes pause worker-1
    """
    client().post(f"/v1/nodes/{name}/pause")
    render.ok(f"node/{name} paused")


@nodes_app.command("activate")
@command
def activate(name: str = NodeArg) -> None:
    """Make a paused or drained node take work again.

    Example: dockyard nodes activate worker-1
    """
    client().post(f"/v1/nodes/{name}/activate")
    render.ok(f"node/{name} activated")


@nodes_app.command("rm")
@command
def rm(name: str = NodeArg) -> None:
    """Remove a node that is down, or drained and empty.

    Example: dockyard nodes drain worker-1 --wait && dockyard nodes rm worker-1
    """
    client().delete(f"/v1/nodes/{name}")
    render.ok(f"node/{name} removed")


def register(app: typer.Typer) -> None:
    nodes_app.command("list", hidden=True)(ls)
    nodes_app.command("remove", hidden=True)(rm)
    app.add_typer(nodes_app, name="nodes", rich_help_panel=PANEL)
    app.add_typer(nodes_app, name="node", hidden=True)

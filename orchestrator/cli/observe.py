"""`dockyard logs` and `dockyard events`: what the containers print and what the cluster does."""
from __future__ import annotations

import json
import queue
import threading
from typing import Any, Iterable, Iterator, Optional

import typer

from orchestrator.cli import render
from orchestrator.cli.client import CliError, client, command, complete_services, fail
from orchestrator.cli.get_cmd import event_object

PANEL = "Observe"


# ------------------------------------------------------------------- logs

def instance_label(i: dict) -> str:
    return f"{i['service']}.{i['slot']}"


def prefixed(label: str, width: int, line: str) -> str:
    return f"{label:<{width}} | {line}"


def _targets(target: str) -> list[dict]:
    c = client()
    one = c.get(f"/v1/instances/{target}", ok404=True)
    if one is not None:
        return [one]
    insts = c.get(f"/v1/services/{target}/instances", ok404=True)
    if insts is None:
        raise fail(f"no service or instance named {target!r}", "`dockyard get instances` lists them")
    if not insts:
        raise fail(f"service {target!r} has no instances", f"`dockyard scale {target} 1` starts one")
    return sorted(insts, key=lambda i: (i["slot"], i["id"]))


def _params(tail: Optional[int], follow: bool) -> dict[str, Any]:
    p: dict[str, Any] = {}
    if tail is not None:
        p["tail"] = tail
    if follow:
        p["follow"] = "true"
    return p


@command
def logs(target: str = typer.Argument(..., help="a service name (all its instances) or an instance id",
                                      autocompletion=complete_services),
         follow: bool = typer.Option(False, "--follow", "-f", help="keep printing new lines until Ctrl-C"),
         tail: Optional[int] = typer.Option(None, "--tail", min=0, help="only the last N lines of each instance"),
         prefix: Optional[bool] = typer.Option(None, "--prefix/--no-prefix",
                                               help="start lines with service.slot (default: when several instances)")) -> None:
    """Print the logs of a service's instances, or of one instance.

    Example: dockyard logs web --tail 20

    Example: dockyard logs web -f

    Example: dockyard logs 3f2a9c01de
    """
    insts = _targets(target)
    show = prefix if prefix is not None else len(insts) > 1
    width = max(len(instance_label(i)) for i in insts)
    params = _params(tail, follow)
    if not follow or len(insts) == 1:
        try:
            _print_each(insts, params, show, width)
        except KeyboardInterrupt:
            if not follow:
                raise
        return
    _follow_many(insts, params, show, width)


def _print_each(insts: list[dict], params: dict, show: bool, width: int) -> None:
    failed = 0
    for i in insts:
        try:
            for line in client().stream_lines(f"/v1/instances/{i['id']}/logs", params):
                typer.echo(prefixed(instance_label(i), width, line) if show else line)
        except CliError as exc:
            if len(insts) == 1:
                raise
            failed += 1
            render.warn(f"{instance_label(i)} ({i['id']}): {exc.message}")
    if failed == len(insts):
        raise fail("no instance's logs could be read")


def _follow_many(insts: list[dict], params: dict, show: bool, width: int) -> None:
    """Merge the followed streams of several instances, line by line, until Ctrl-C."""
    q: queue.Queue = queue.Queue()
    c = client()

    def pump(i: dict) -> None:
        try:
            for line in c.stream_lines(f"/v1/instances/{i['id']}/logs", params):
                q.put((i, line, None))
        except CliError as exc:
            q.put((i, None, exc))
        except Exception as exc:  # noqa: BLE001 - reported by the main thread
            q.put((i, None, CliError(str(exc))))
        finally:
            q.put((i, None, None))

    for i in insts:
        threading.Thread(target=pump, args=(i,), daemon=True).start()
    running = len(insts)
    try:
        while running:
            i, line, err = q.get()
            if err is not None:
                render.warn(f"{instance_label(i)} ({i['id']}): {err.message}")
            elif line is None:
                running -= 1
            else:
                typer.echo(prefixed(instance_label(i), width, line) if show else line)
    except KeyboardInterrupt:
        return


# ------------------------------------------------------------------- events

def parse_sse(lines: Iterable[str]) -> Iterator[dict]:
    """Events of a text/event-stream: the JSON `data` of each, comments and keep-alives skipped."""
    data: list[str] = []
    for raw in lines:
        line = raw.rstrip("\r\n")
        if not line:
            if data:
                try:
                    yield json.loads("\n".join(data))
                except ValueError:
                    pass
                data = []
            continue
        if line.startswith(":"):
            continue
        key, _, val = line.partition(":")
        if key == "data":
            data.append(val[1:] if val.startswith(" ") else val)
    if data:
        try:
            yield json.loads("\n".join(data))
        except ValueError:
            pass


def event_line(e: dict) -> str:
    return f"{e.get('time') or '-'}  {e['kind']:<20} {event_object(e):<24} {e['message']}"


@command
def events(watch: bool = typer.Option(False, "--watch", "-w", help="keep printing new events until Ctrl-C"),
           service: Optional[str] = typer.Option(None, "--service", "-s", help="only this service's events",
                                                 autocompletion=complete_services),
           node: Optional[str] = typer.Option(None, "--node", help="only this node's events"),
           limit: int = typer.Option(20, "--limit", min=0, max=1000, help="how many past events to print first"),
           since: Optional[int] = typer.Option(None, "--since", min=0, help="only events after this event id"),
           as_json: bool = typer.Option(False, "--json", help="one JSON object per line")) -> None:
    """Print recent events, oldest first; with -w keep following new ones (server-sent events).

    Example: dockyard events -w

    Example: dockyard events -s web --limit 50

    Example: dockyard events -w --json --limit 0

    Example: dockyard events --since 120
    """
    c = client()
    params: dict[str, Any] = {}
    if service:
        params["service"] = service
    if node:
        params["node"] = node

    def show(e: dict) -> None:
        typer.echo(json.dumps(e) if as_json else event_line(e))

    if since is not None:
        params["since"] = since
    past = c.get("/v1/events", params={**params, "limit": limit}) if limit else []
    for e in reversed(past):
        show(e)
    if not watch:
        return
    if past:
        params["since"] = past[0]["id"]
    elif since is None:
        newest = c.get("/v1/events", params={"limit": 1})
        params["since"] = newest[0]["id"] if newest else 0
    try:
        for e in parse_sse(c.stream_lines("/v1/events", {**params, "watch": "true"})):
            show(e)
    except KeyboardInterrupt:
        return
    raise fail("the server closed the event stream")


def register(app: typer.Typer) -> None:
    app.command(rich_help_panel=PANEL)(logs)
    app.command(rich_help_panel=PANEL)(events)


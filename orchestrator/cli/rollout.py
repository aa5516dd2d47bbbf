"""`dockyard rollout status|history|undo|pause|resume|diff`: watching and steering rolling updates."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Optional

import typer

from orchestrator.cli import render
from orchestrator.cli.client import client, command, complete_services, fail
from orchestrator.cli.plan import diff as spec_diff, value
from orchestrator.cli.render import Col, Output, OutputOpt, age

PANEL = "Workloads"
FAILED_PHASES = {"paused": "is paused", "rolled_back": "was rolled back", "failed": "failed"}

rollout_app = typer.Typer(help="Watch and steer rolling updates: status, history, undo, pause, resume.",
                          no_args_is_help=True)
NameArg = typer.Argument(..., help="service name", autocompletion=complete_services)


@dataclass(frozen=True)
class Verdict:
    done: bool
    failed: bool
    message: str
    phase: str = ""


def verdict(r: dict) -> Verdict:
    """Is the rollout described by GET /v1/services/NAME/rollout over, and did it fail?"""
    name, rev, phase, replicas = r["service"], r["revision"], r["phase"], r["replicas"]
    new, new_ready = r.get("new", r.get("updated", 0)), r.get("new_ready", r.get("ready", 0))
    old = r.get("old", 0)
    if phase in FAILED_PHASES:
        why = f": {r['reason']}" if r.get("reason") else ""
        return Verdict(True, True, f"rollout of {name} {FAILED_PHASES[phase]} (revision {rev}){why}", phase)
    if phase == "complete" and new == replicas and new_ready == replicas and not old:
        return Verdict(True, False, f"service/{name} successfully rolled out: revision {rev}, {new_ready}/{replicas} ready",
                       phase)
    state = "" if phase == "complete" else f" ({phase})"  # a new service: complete, still starting
    left = f", {old} old left" if old else ""
    return Verdict(False, False, f"waiting for rollout of {name} to revision {rev}: "
                                 f"{new}/{replicas} updated, {new_ready}/{replicas} ready{left}{state}", phase)


@rollout_app.command("status")
@command
def status(name: str = NameArg,
           watch: bool = typer.Option(True, "--watch/--no-watch", "-w/-W", help="follow until the rollout ends"),
           timeout: float = typer.Option(600.0, "--timeout", min=0, help="give up (exit 1) after this many seconds; 0: never"),
           interval: float = typer.Option(0.5, "--interval", min=0.05, help="seconds between polls")) -> None:
    """Follow a rollout until it completes (exit 0) or fails, is paused or rolled back (exit 1).

    Example: dockyard rollout status web

    Example: dockyard apply -f web.yaml && dockyard rollout status web --timeout 120
    """
    c = client()
    deadline = time.monotonic() + timeout if timeout else None
    last = ""
    while True:
        v = verdict(c.get(f"/v1/services/{name}/rollout"))
        if v.failed:
            raise fail(v.message, *failure_hints(name, v))
        if v.message != last:
            render.ok(v.message)
            last = v.message
        if v.done or not watch:
            return
        if deadline is not None and time.monotonic() > deadline:
            raise fail(f"rollout of {name} did not finish within {timeout:g}s", f"last state: {last}")
        time.sleep(interval)


def failure_hints(name: str, v: Verdict) -> list[str]:
    hints = [f"`dockyard describe service {name}` shows the instances and events"]
    if v.phase == "paused":
        hints.append(f"`dockyard rollout resume {name}` carries on, `dockyard rollout undo {name}` goes back")
    else:
        hints.append("fix the spec and apply it again to start a new rollout")
    return hints


HISTORY_COLS = [
    Col("REVISION", lambda r: r["number"]),
    Col("CURRENT", lambda r: "*" if r.get("current") else ""),
    Col("AGE", lambda r: age(r.get("created_at"))),
    Col("CHANGE-CAUSE", lambda r: r.get("change_cause")),
    Col("IMAGE", lambda r: (r.get("spec") or {}).get("image"), wide=True),
]


@rollout_app.command("history")
@command
def history(name: str = NameArg,
            revision: Optional[int] = typer.Option(None, "--revision", min=1, help="show this revision's spec"),
            output: Output = OutputOpt) -> None:
    """List a service's revisions (newest first), or show one revision's spec.

    Example: dockyard rollout history web

    Example: dockyard rollout history web --revision 2
    """
    c = client()
    if revision is not None:
        rev = c.get(f"/v1/services/{name}/revisions/{revision}")
        if output in (Output.json, Output.yaml):
            render.emit(rev, output)
        else:
            typer.echo(f"service/{name} revision {revision}" + (" (current)" if rev.get("current") else "")
                       + f": {rev.get('change_cause') or '-'}")
            typer.echo(render.to_yaml(rev["spec"]), nl=False)
        return
    render.emit(c.get(f"/v1/services/{name}/revisions"), output, HISTORY_COLS, empty="no revisions")


@rollout_app.command("diff")
@command
def diff(name: str = NameArg, a: int = typer.Argument(..., min=1, help="from revision"),
         b: int = typer.Argument(..., min=1, help="to revision")) -> None:
    """Show what changed between two revisions of a service.

    Example: dockyard rollout diff web 1 2
    """
    c = client()
    ra = c.get(f"/v1/services/{name}/revisions/{a}")
    rb = c.get(f"/v1/services/{name}/revisions/{b}")
    changes = spec_diff(ra["spec"], rb["spec"])
    if not changes:
        typer.echo(f"revisions {a} and {b} of {name} have the same spec")
    for ch in changes:
        if ch.op == "~":
            typer.echo(f"~ {ch.field}: {value(ch.old)} => {value(ch.new)}")
        else:
            typer.echo(f"{ch.op} {ch.field}: {value(ch.new if ch.op == '+' else ch.old)}")


@rollout_app.command("undo")
@command
def undo(name: str = NameArg,
         to_revision: Optional[int] = typer.Option(None, "--to-revision", min=1,
                                                   help="the revision to go back to (default: the previous one)")) -> None:
    """Roll a service back to its previous revision, or to a given one.

    Example: dockyard rollout undo web

    Example: dockyard rollout undo web --to-revision 2
    """
    c = client()
    before = c.get(f"/v1/services/{name}")
    out = c.post(f"/v1/services/{name}/rollback", {"revision": to_revision} if to_revision else {})
    render.ok(f"service/{name} rolled back from revision {before['revision']} to revision {out['revision']}")


@rollout_app.command("pause")
@command
def pause(name: str = NameArg) -> None:
    """Pause a rollout: nothing more is replaced until it is resumed.

    Example: dockyard rollout pause web
    """
    client().post(f"/v1/services/{name}/rollout/pause")
    render.ok(f"service/{name} rollout paused")


@rollout_app.command("resume")
@command
def resume(name: str = NameArg) -> None:
    """Resume a paused rollout.

    Example: dockyard rollout resume web
    """
    client().post(f"/v1/services/{name}/rollout/resume")
    render.ok(f"service/{name} rollout resumed")


def register(app: typer.Typer) -> None:
    app.add_typer(rollout_app, name="rollout", rich_help_panel=PANEL)

"""`dockyard top SERVICE` and `dockyard rebalance SERVICE`: what a service uses, what the
autoscaler made of it, and evening out its placement (docs/autoscaling.md)."""
from __future__ import annotations

import typer

from orchestrator.cli import render
from orchestrator.cli.client import client, command, complete_services
from orchestrator.cli.render import Col, Output, OutputOpt

PANEL = "Workloads"
NameArg = typer.Argument(..., help="service name", autocompletion=complete_services)


def _pct(v: object) -> str:
    return "-" if v is None else f"{v:g}%"


def summary_lines(m: dict) -> list[str]:
    """The lines above the table: totals, traffic and the autoscaler's last look."""
    cpu, mem, t = m["cpu"], m["memory"], m["traffic"]
    cores = "-" if cpu["cores"] is None else "%.3f cores" % cpu["cores"]
    used = render.fmt_bytes(mem["bytes"]) if mem["bytes"] is not None else "-"
    of_mem = "" if mem["average_percent"] is None else f"  (average {_pct(mem['average_percent'])} of the request)"
    rps = "-" if t["rps"] is None else "%g req/s" % t["rps"]
    p95 = "" if t["latency_p95_ms"] is None else ", p95 %g ms" % t["latency_p95_ms"]
    lines = [f"service {m['service']}: {m['replicas']} replica(s)",
             f"  cpu     {cores}  (average {_pct(cpu['average_percent'])} of the request)",
             f"  memory  {used}{of_mem}",
             f"  traffic {rps}{p95}"]
    a = m.get("autoscale")
    if a:
        value = "no figures yet" if a.get("value") is None else f"{a['value']:.0f}"
        lines.append(f"  autoscale {a['metric']} target {a['target']:g}, {a['min']}-{a['max']} replicas: "
                     f"now {value}, recommends {a.get('recommendation', '-')}")
    r = m.get("rebalance") or {}
    if r.get("moves"):
        lines.append(f"  rebalance: {len(r['moves'])} move(s) under way")
    return lines


@command
def top(name: str = NameArg, output: Output = OutputOpt) -> None:
    """What a service's instances use (CPU, memory), what its gateways serve, and the autoscaler's view.

    Example: dockyard top web
    """
    m = client().get(f"/v1/services/{name}/metrics")
    if Output(output) in (Output.json, Output.yaml):
        render.emit(m, output)
        return
    for line in summary_lines(m):
        typer.echo(line)
    render.table(m["instances"], [
        Col("SLOT", lambda i: i["slot"]), Col("INSTANCE", lambda i: i["id"]), Col("NODE", lambda i: i["node"] or "-"),
        Col("STATE", lambda i: i["state"]), Col("CPU", lambda i: "-" if i["cpu"] is None else f"{i['cpu']:.3f}"),
        Col("CPU%", lambda i: _pct(i["cpu_percent"])),
        Col("MEMORY", lambda i: render.fmt_bytes(i["memory"]) if i["memory"] is not None else "-"),
    ], wide=Output(output) == Output.wide, empty="no instances")


@command
def rebalance(name: str = NameArg, dry_run: bool = typer.Option(False, "--dry-run", help="only print the plan"),
              output: Output = OutputOpt) -> None:
    """Move a service's instances towards an even spread over its nodes, surge-first, a few at a time.

    Example: dockyard rebalance web --dry-run
    """
    out = client().post(f"/v1/services/{name}/rebalance", params={"dry_run": str(dry_run).lower()})
    if Output(output) in (Output.json, Output.yaml):
        render.emit(out, output)
        return
    if out["balanced"]:
        render.ok(f"service/{name} is spread evenly over {len(out['nodes'])} node(s): nothing to move")
        return
    for m in out["moves"]:
        typer.echo(f"  slot {m['slot']} ({m['instance']}): {m['from']} -> {m['to']}")
    if dry_run:
        render.ok(f"{len(out['moves'])} move(s), {out['max_moves']} at a time (dry run: nothing moved)")
    else:
        render.ok(f"service/{name} rebalancing: {len(out['moves'])} move(s), {out['max_moves']} at a time, "
                  "each replacement ready before the old instance stops")


def register(app: typer.Typer) -> None:
    app.command(rich_help_panel=PANEL)(top)
    app.command(rich_help_panel=PANEL)(rebalance)

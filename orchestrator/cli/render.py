"""Output: tables (plain or wide) with Rich, JSON and YAML, and the small formatters they use.

The pure helpers (`age`, `fmt_bytes`, `rows`, `render_table`) are unit-tested; `emit` is the
one place that writes a list or an object in the format the user chose with -o.
"""
from __future__ import annotations

import io
import json
import time
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Any, Callable, Iterable

import typer
import yaml


class Output(str, Enum):
    table = "table"
    wide = "wide"
    json = "json"
    yaml = "yaml"
    name = "name"


OutputOpt = typer.Option(Output.table, "--output", "-o", help="table, wide (more columns), json, yaml or name (one per line)",
                         case_sensitive=False)


@dataclass(frozen=True)
class Col:
    header: str
    get: Callable[[dict], Any]
    wide: bool = False  # only in -o wide


# ------------------------------------------------------------------- formatters

def epoch(t: Any) -> float | None:
    """Seconds since the epoch from a float or an ISO-8601 string ('...Z' allowed)."""
    if t is None or t == "":
        return None
    if isinstance(t, (int, float)):
        return float(t)
    try:
        return datetime.fromisoformat(str(t).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def age(t: Any, now: float | None = None) -> str:
    """'45s', '12m', '3h', '5d' like kubectl; '-' when unknown."""
    ts = epoch(t)
    if ts is None:
        return "-"
    return span(max(0.0, (time.time() if now is None else now) - ts))


def span(secs: float) -> str:
    """A duration in its largest whole unit below two of the next: '45s', '12m', '3h', '5d'."""
    secs = int(secs)
    if secs < 120:
        return f"{secs}s"
    if secs < 7200:
        return f"{secs // 60}m"
    if secs < 172800:
        return f"{secs // 3600}h"
    return f"{secs // 86400}d"


def fmt_bytes(n: Any) -> str:
    """Binary units: 536870912 -> '512Mi', 1610612736 -> '1.5Gi'."""
    if n is None or n == "":
        return "-"
    n = int(n)
    for unit, size in (("Ti", 1024**4), ("Gi", 1024**3), ("Mi", 1024**2), ("Ki", 1024)):
        if n >= size:
            v = n / size
            return f"{v:.0f}{unit}" if v == int(v) or v >= 100 else f"{v:.1f}{unit}".replace(".0" + unit, unit)
    return str(n)


def fmt_ports(ports: Iterable[Any]) -> str:
    """Spec ports ({container_port, host_port, protocol}) or instance host ports, joined."""
    out = []
    for p in ports or []:
        if isinstance(p, dict):
            cp, hp = p.get("container_port"), p.get("host_port")
            proto = p.get("protocol", "tcp")
            out.append(f"{hp}:{cp}/{proto}" if hp else f"{cp}/{proto}")
        else:
            out.append(str(p))
    return ",".join(out) or "-"


def fmt_labels(labels: dict | None) -> str:
    return ",".join(f"{k}={v}" for k, v in (labels or {}).items()) or "-"


def text(v: Any) -> str:
    if v is None or v == "":
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float) and v == int(v):
        return str(int(v))
    return str(v)


# ------------------------------------------------------------------- tables

def rows(items: list[dict], cols: list[Col], wide: bool) -> tuple[list[str], list[list[str]]]:
    shown = [c for c in cols if wide or not c.wide]
    return [c.header for c in shown], [[text(c.get(i)) for c in shown] for i in items]


STYLES = {
    "running": "green", "healthy": "green", "ready": "green", "active": "green", "complete": "green",
    "failed": "red", "lost": "red", "down": "red", "rolled_back": "red", "exited": "yellow",
    "paused": "yellow", "drained": "yellow", "progressing": "cyan", "pending": "cyan", "starting": "cyan",
}


def render_table(headers: list[str], body: list[list[str]], color: bool = False, width: int | None = None) -> str:
    """A borderless, left-aligned table like kubectl's, as text (ANSI colours if `color`)."""
    from rich.console import Console
    from rich.table import Table

    t = Table(box=None, show_edge=False, pad_edge=False, header_style="bold" if color else "", padding=(0, 3, 0, 0))
    for h in headers:
        t.add_column(h, no_wrap=True, overflow="fold")
    for r in body:
        t.add_row(*[(f"[{STYLES[c]}]{_esc(c)}[/]" if color and c in STYLES else _esc(c)) for c in r])
    buf = io.StringIO()
    need = sum(max([len(h)] + [len(r[i]) for r in body]) + 3 for i, h in enumerate(headers))
    Console(file=buf, width=max(width or 0, need, 20), force_terminal=color, no_color=not color,
            highlight=False, color_system="standard" if color else None).print(t)
    return "\n".join(line.rstrip() for line in buf.getvalue().splitlines())


def _esc(s: str) -> str:
    from rich.markup import escape

    return escape(s)


def table(items: list[dict], cols: list[Col], wide: bool = False, empty: str = "nothing found") -> None:
    from orchestrator.cli.client import stdout_isatty

    if not items:
        typer.echo(empty, err=True)
        return
    headers, body = rows(items, cols, wide)
    typer.echo(render_table(headers, body, color=stdout_isatty()))


# ------------------------------------------------------------------- documents

def to_yaml(data: Any) -> str:
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=False, allow_unicode=True)


def to_json(data: Any) -> str:
    return json.dumps(data, indent=2, default=str)


def emit(data: Any, fmt: Output, cols: list[Col] | None = None, empty: str = "nothing found") -> None:
    """Write `data` (a list, or one object) as the chosen -o format."""
    fmt = Output(fmt)
    if fmt == Output.json:
        typer.echo(to_json(data))
    elif fmt == Output.yaml:
        typer.echo(to_yaml(data), nl=False)
    elif fmt == Output.name:
        for item in data if isinstance(data, list) else [data]:
            typer.echo(str(item.get("name", item.get("id", item.get("number", "")))))
    else:
        items = data if isinstance(data, list) else [data]
        table(items, cols or [], wide=fmt == Output.wide, empty=empty)


def ok(message: str) -> None:
    """A one-line success message (kubectl style: 'service/web created')."""
    typer.echo(message)


def warn(message: str) -> None:
    from rich.console import Console
    from rich.markup import escape

    Console(stderr=True, highlight=False, soft_wrap=True).print(f"[bold yellow]warning:[/] {escape(message)}")

"""`dockyard stack install|upgrade|history|rollback|uninstall|template|diff|status`: packages
installed as server-side stacks with numbered releases (docs/releases.md).

A package is rendered here, in the CLI (as Helm 3 renders in its client); the server gets the
rendered services plus the values, applies them in one transaction and records the release.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, List, Optional

import typer

from orchestrator.cli import render
from orchestrator.cli.client import ApiError, CliError, client, command, fail
from orchestrator.cli.render import Col, Output, OutputOpt, age
from orchestrator.errors import DockyardError

PANEL = "Workloads"
stack_app = typer.Typer(help="Install packages as stacks: one versioned, parameterised application with "
                             "releases, diff and rollback (docs/releases.md).", no_args_is_help=True)

ValuesOpt = typer.Option(None, "--values", "-f", help="a values file (YAML); repeatable, later ones win")
SetOpt = typer.Option(None, "--set", help="a value, key.path=value (read as YAML); repeatable, wins over -f")
WaitOpt = typer.Option(False, "--wait", help="wait until the release is deployed (exit 0) or has failed (exit 1)")
TimeoutOpt = typer.Option(600.0, "--timeout", help="seconds --wait waits")
AtomicOpt = typer.Option(True, "--atomic/--no-atomic", help="a failed release rolls the whole stack back (default on)")
DescOpt = typer.Option(None, "--description", help="why: recorded on the release")

RELEASE_COLS = [
    Col("RELEASE", lambda r: r["number"]),
    Col("STATUS", lambda r: r["status"] + (" (current)" if r.get("current") else "")),
    Col("UPDATED", lambda r: age(r.get("created_at"))),
    Col("PACKAGE", lambda r: (f"{r['package']['name']}-{r['package']['version']}".rstrip("-")
                              if r.get("package") else None)),
    Col("DESCRIPTION", lambda r: r.get("description")),
    Col("REASON", lambda r: r.get("reason") or None, wide=True),
]
SERVICE_COLS = [
    Col("SERVICE", lambda s: s["name"]),
    Col("REVISION", lambda s: s["revision"]),
    Col("RELEASE-REVISION", lambda s: s["release_revision"]),
    Col("READY", lambda s: f"{s['ready']}/{s['replicas']}"),
    Col("ROLLOUT", lambda s: s["phase"]),
    Col("REASON", lambda s: s.get("reason") or None, wide=True),
]


def path(name: str = "", tail: str = "") -> str:
    ns = client().namespace
    base = f"/v1/namespaces/{ns}/stacks" if ns else "/v1/stacks"
    return base + (f"/{name}" if name else "") + tail


def _render(name: str, package: Path, values_files: Optional[List[Path]], sets: Optional[List[str]],
            base: dict | None = None) -> tuple[Any, dict, dict[str, str], list[dict]]:
    """(the package, the values, {manifest: text}, the services) or a CliError saying why not."""
    from orchestrator.stacks import package as pkgs

    try:
        pkg = pkgs.load(package)
        vals = pkgs.values(pkg, values_files, sets, base=base)
        texts, services, warnings = pkgs.render(pkg, name, client().namespace or "default", vals)
    except DockyardError as exc:
        raise fail(exc.message, "nothing was applied")
    for w in warnings:
        render.warn(w)
    return pkg, vals, texts, services


def _body(pkg: Any, vals: dict, services: list[dict], **extra: Any) -> dict:
    return {"services": services, "values": vals, "package": {"name": pkg.name, "version": pkg.version}, **extra}


def _put(name: str, body: dict) -> dict:
    try:
        return client().put(path(name), body)
    except ApiError as exc:
        if exc.status == 409 and "in progress" in exc.message:
            exc.hints.append(f"dockyard stack status {name} shows the release rolling out")
        raise


def _changes(out: dict) -> list[str]:
    lines = []
    for c in out["changes"]:
        if c["action"] == "unchanged":
            continue
        sign = {"created": "+", "deleted": "-"}.get(c["action"], "~")
        lines.append(f"{sign} service {c['service']} ({c['action']})")
        for f in c["changes"]:
            if c["action"] == "created":
                lines.append(f"    + {f['field']}: {render.to_json(f['to']).strip()}")
            else:
                lines.append(f"    ~ {f['field']}: {render.to_json(f['from']).strip()} -> {render.to_json(f['to']).strip()}")
        rep = c.get("replicas") or {}
        if c["action"] in ("updated", "scaled") and rep.get("from") != rep.get("to"):
            lines.append(f"    ~ replicas: {rep['from']} -> {rep['to']}")
    for f in out.get("values_changes") or []:
        lines.append(f"~ values.{f['field']}: {render.to_json(f['from']).strip()} -> {render.to_json(f['to']).strip()}")
    return lines


def _wait(name: str, timeout: float, release: int | None = None) -> None:
    """Until the stack no longer rolls out. Exit 0 when `release` (None: whichever is current,
    after an apply that changed nothing) runs; else 1 with the reason."""
    deadline = time.monotonic() + timeout
    while True:
        st = client().get(path(name))
        if st["state"] != "rolling":
            break
        if time.monotonic() > deadline:
            raise fail(f"stack {name}: release {st['release']} still rolling after {timeout:g}s")
        time.sleep(1.0)
    if st["state"] == "deployed" and release in (None, st["release"]):
        render.ok(f"stack/{name} release {st['release']} deployed")
        return
    if release is None and st["state"] == "rolled_back":  # it runs the release it returned to
        render.ok(f"stack/{name} release {st['release']} running ({st['reason']})")
        return
    raise CliError(f"stack {name}: {st['state']}: {st['reason']}")


def _install(name: str, package: Path, values: Optional[List[Path]], set_: Optional[List[str]], *, atomic: bool,
             prune: bool, description: Optional[str], wait: bool, timeout: float, base: dict | None = None) -> None:
    pkg, vals, _, services = _render(name, package, values, set_, base)
    out = _put(name, _body(pkg, vals, services, atomic=atomic, prune=prune, description=description))
    if out["action"] == "unchanged":
        render.ok(f"stack/{name} unchanged (release {out['release']})")
    else:
        render.ok(f"stack/{name} {'installed' if out['action'] == 'created' else 'upgraded'}: release "
                  f"{out['release']} ({out['stack']['state']})")
    if wait:
        _wait(name, timeout, None if out["action"] == "unchanged" else out["release"])


@stack_app.command("install")
@command
def install(name: str = typer.Argument(..., help="the stack's name"),
            package: Path = typer.Argument(..., help="a package folder, a .tar.gz of one, or a compose file"),
            values: Optional[List[Path]] = ValuesOpt, set_: Optional[List[str]] = SetOpt,
            atomic: bool = AtomicOpt, description: Optional[str] = DescOpt, wait: bool = WaitOpt,
            timeout: float = TimeoutOpt) -> None:
    """Install a package as a new stack (release 1). Refused if the stack exists: use upgrade.

    Example: dockyard stack install shop ./shop -f prod.yaml --set api.replicas=3 --wait
    """
    if client().get(path(name), ok404=True) is not None:
        raise fail(f"stack {name!r} exists", f"dockyard stack upgrade {name} PACKAGE changes it")
    _install(name, package, values, set_, atomic=atomic, prune=True, description=description, wait=wait,
             timeout=timeout)


@stack_app.command("upgrade")
@command
def upgrade(name: str = typer.Argument(..., help="the stack's name"),
            package: Path = typer.Argument(..., help="a package folder, a .tar.gz of one, or a compose file"),
            values: Optional[List[Path]] = ValuesOpt, set_: Optional[List[str]] = SetOpt,
            reuse_values: bool = typer.Option(False, "--reuse-values", help="start from the current release's "
                                              "values instead of the package's defaults"),
            install_: bool = typer.Option(False, "--install", help="install it if the stack does not exist"),
            prune: bool = typer.Option(True, "--prune/--no-prune", help="delete the stack's services the package "
                                       "no longer renders (default on)"),
            atomic: bool = AtomicOpt, description: Optional[str] = DescOpt, wait: bool = WaitOpt,
            timeout: float = TimeoutOpt) -> None:
    """Upgrade a stack to a package (a new release if anything changes), in one transaction.

    Example: dockyard stack upgrade shop ./shop --set image.tag=2 --wait
    """
    current = client().get(path(name), ok404=True)
    if current is None and not install_:
        raise fail(f"stack {name!r} not found", f"dockyard stack install {name} PACKAGE, or upgrade --install")
    base = current["values"] if (current and reuse_values) else None
    _install(name, package, values, set_, atomic=atomic, prune=prune, description=description, wait=wait,
             timeout=timeout, base=base)


@stack_app.command("template")
@command
def template(name: str = typer.Argument(..., help="the stack's name (templates see it as stack.name)"),
             package: Path = typer.Argument(..., help="a package folder, a .tar.gz of one, or a compose file"),
             values: Optional[List[Path]] = ValuesOpt, set_: Optional[List[str]] = SetOpt) -> None:
    """Render a package and print the manifests; nothing is sent to the server.

    Example: dockyard stack template shop ./shop --set replicas=3
    """
    _, _, texts, _ = _render(name, package, values, set_)
    for file, text in texts.items():
        typer.echo(f"# Source: {file}\n{text.rstrip()}\n---")


@stack_app.command("diff")
@command
def diff(name: str = typer.Argument(..., help="the stack's name"),
         package: Path = typer.Argument(..., help="a package folder, a .tar.gz of one, or a compose file"),
         values: Optional[List[Path]] = ValuesOpt, set_: Optional[List[str]] = SetOpt,
         reuse_values: bool = typer.Option(False, "--reuse-values", help="start from the current release's values"),
         prune: bool = typer.Option(True, "--prune/--no-prune"),
         output: Output = OutputOpt) -> None:
    """What an upgrade to this package would change (the server checks it all; nothing is written).

    Example: dockyard stack diff shop ./shop --set image.tag=2
    """
    current = client().get(path(name), ok404=True)
    base = current["values"] if (current and reuse_values) else None
    pkg, vals, _, services = _render(name, package, values, set_, base)
    out = _put(name, _body(pkg, vals, services, prune=prune, dry_run=True))
    if output in (Output.json, Output.yaml):
        render.emit(out, output)
        return
    lines = _changes(out)
    typer.echo("\n".join(lines) if lines else f"stack {name}: no changes")


@stack_app.command("compare")
@command
def compare(name: str = typer.Argument(..., help="the stack's name"),
            a: int = typer.Argument(..., min=1, max=2**31 - 1, help="from this release"),
            b: int = typer.Argument(..., min=1, max=2**31 - 1, help="to this release"),
            output: Output = OutputOpt) -> None:
    """What changed from one release to another: services and values.

    Example: dockyard stack compare shop 1 2
    """
    out = client().get(path(name, f"/releases/{a}/diff/{b}"))
    if output in (Output.json, Output.yaml):
        render.emit(out, output)
        return
    lines = _changes({"changes": out["services"], "values_changes": out["values"]})
    typer.echo("\n".join(lines) if lines else f"stack {name}: releases {a} and {b} are the same")


@stack_app.command("values")
@command
def values_(name: str = typer.Argument(..., help="the stack's name"),
            release: Optional[int] = typer.Option(None, "--release", min=1, max=2**31 - 1,
                                                  help="of this release (default: the current one)"),
            output: Output = typer.Option(Output.yaml, "--output", "-o", help="yaml or json")) -> None:
    """The values a release was rendered with (a file `-f` takes back).

    Example: dockyard stack values shop --release 1 > values.yaml
    """
    rel = client().get(path(name, f"/releases/{release}")) if release else client().get(path(name))
    render.emit(rel["values"], Output.json if output == Output.json else Output.yaml)


@stack_app.command("history")
@command
def history(name: str = typer.Argument(..., help="the stack's name"), output: Output = OutputOpt) -> None:
    """Every release of a stack, newest first, with its status and why.

    Example: dockyard stack history shop
    """
    render.emit(client().get(path(name, "/releases")), output, RELEASE_COLS, empty="no releases")


@stack_app.command("status")
@command
def status(name: str = typer.Argument(..., help="the stack's name"), output: Output = OutputOpt) -> None:
    """A stack's release, state and why, and each service's revision and readiness.

    Example: dockyard stack status shop
    """
    st = client().get(path(name))
    if output in (Output.json, Output.yaml):
        render.emit(st, output)
        return
    typer.echo(f"stack {st['name']}: release {st['release']}, {st['state']}"
               + (f" ({st['reason']})" if st.get("reason") else ""))
    render.table(st["services"], SERVICE_COLS, wide=output == Output.wide)


@stack_app.command("rollback")
@command
def rollback(name: str = typer.Argument(..., help="the stack's name"),
             release: Optional[int] = typer.Argument(None, min=1, max=2**31 - 1,
                                                     help="the release (default: the previous one)"),
             wait: bool = WaitOpt, timeout: float = TimeoutOpt) -> None:
    """Return every service to its revision in a release, as one watched rollout.

    Example: dockyard stack rollback shop 1 --wait
    """
    st = client().post(path(name, "/rollback"), {"release": release} if release else {})
    render.ok(f"stack/{name} rolling back to release {st['release']} ({st['state']})")
    if wait:
        _wait(name, timeout, st["release"])


@stack_app.command("uninstall")
@command
def uninstall(name: str = typer.Argument(..., help="the stack's name"),
              wait: bool = typer.Option(False, "--wait", help="return once its containers are gone"),
              timeout: float = typer.Option(120.0, "--timeout")) -> None:
    """Delete a stack, its releases and every service it owns.

    Example: dockyard stack uninstall shop --wait
    """
    names = {s["name"] for s in client().get(path(name))["services"]}
    client().delete(path(name))
    render.ok(f"stack/{name} uninstalled")
    deadline = time.monotonic() + timeout
    while wait:
        left = [i for i in client().get("/v1/instances", params={"all": "true"}) if i["service"] in names]
        if not left:
            return
        if time.monotonic() > deadline:
            raise fail(f"{len(left)} container(s) of stack {name} still not gone after {timeout:g}s")
        time.sleep(0.5)


def register(app: typer.Typer) -> None:
    app.add_typer(stack_app, name="stack", rich_help_panel=PANEL)

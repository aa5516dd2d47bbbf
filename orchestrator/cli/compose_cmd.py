"""`dockyard compose up|convert|down`: run a Docker Compose file as a Dockyard stack."""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import List, Optional

import typer

from orchestrator.cli import render
from orchestrator.cli.client import ApiError, CliError, client, command, fail, usage
from orchestrator.cli.render import Output

PANEL = "Workloads"
DEFAULT_FILES = ("compose.yaml", "compose.yml", "docker-compose.yaml", "docker-compose.yml")

compose_app = typer.Typer(help="Run a Docker Compose file as a stack (like `docker stack deploy`).",
                          no_args_is_help=True)
FileOpt = typer.Option(None, "--file", "-f", help="compose file (default: compose.yaml or docker-compose.yml here)")
StackOpt = typer.Option(None, "--stack", help="stack name (default: the file's top-level name, else its directory)")


def _path(file: Optional[Path]) -> Path:
    if file is not None:
        return file
    for name in DEFAULT_FILES:
        if Path(name).is_file():
            return Path(name)
    raise usage(f"no compose file given and none of {', '.join(DEFAULT_FILES)} is here; use -f FILE")


EnvFileOpt = typer.Option(None, "--env-file", help="variables for ${VAR} (repeatable; default: .env beside the file)")
VolumeRootOpt = typer.Option(None, "--volume-root", envvar="DOCKYARD_VOLUME_ROOT",
                             help="bind named volumes to DIR/STACK/NAME on the node (the server must --allow bind:DIR); "
                                  "without it a named volume is refused")


ProfileOpt = typer.Option(None, "--profile", help="enable services of this profile (repeatable; default: "
                                                  "COMPOSE_PROFILES); services in no enabled profile are left out")


def translate(file: Optional[Path], stack: Optional[str], quiet: bool = False,  # type: ignore[no-untyped-def]
              env_files: Optional[List[Path]] = None, volume_root: Optional[str] = None, applying: bool = False,
              profiles: Optional[List[str]] = None):
    """Load and translate; print every warning (unless quiet). ComposeError becomes an error line."""
    from orchestrator.compose import ComposeError, load

    path = _path(file)
    try:
        result = load(path, stack=stack, environ=dict(os.environ), env_files=env_files or None,
                      volume_root=volume_root, profiles=profiles or None)
    except ComposeError as exc:
        raise fail(f"{path}: {exc}", *(["nothing was applied"] if applying else []))
    if not quiet:
        for w in result.warnings:
            render.warn(w)
    return path, result


def documents(services: dict[str, dict]) -> list[dict]:
    """Service bodies as `dockyard apply` documents: the name first, then the body."""
    return [{"name": name, **body} for name, body in services.items()]


def _apply(c, docs: list[dict], dry_run: bool, take_over: bool) -> list[dict]:  # type: ignore[no-untyped-def]
    """POST /v1/apply: all of `docs` or none; a refusal names each service and key."""
    from orchestrator.cli.resources import refused

    body: dict = {"services": docs, "dry_run": dry_run}
    if take_over:
        body["take_over"] = True
    try:
        return c.post("/v1/apply", body)["results"]
    except ApiError as exc:
        if exc.no_route:
            raise fail(f"the server at {c.conn.url} has no POST /v1/apply, which compose up needs to apply a "
                       "stack all or nothing", "the server is older than this command line; nothing was applied")
        raise refused(exc) from None


def _wait_for(c, needs: dict[tuple[str, str], list[str]], timeout: float, left: list[str]) -> None:  # type: ignore[no-untyped-def]
    """Wait until every (dependency, condition) holds, as `docker compose up` does before starting
    what depends on it; `needs` maps each to the services waiting for it."""
    from orchestrator.compose.readiness import check

    deadline = time.monotonic() + timeout
    pending = dict(needs)
    for (dep, cond), waiting in pending.items():
        typer.echo(f"waiting for {dep} ({cond}) before {', '.join(waiting)}", err=True)
    why: dict[tuple[str, str], str] = {}
    while pending:
        for key in list(pending):
            dep, cond = key
            svc = c.get(f"/v1/services/{dep}")
            inst = c.get(f"/v1/services/{dep}/instances") if cond == "service_completed_successfully" else None
            verdict, why[key] = check(cond, svc, inst)
            if verdict == "ready":
                typer.echo(f"{dep}: {cond} ({why[key]})", err=True)
                del pending[key]
            elif verdict == "failed":
                raise fail(f"{dep} cannot satisfy {cond}: {why[key]}",
                           f"not applied: {', '.join(left)}; fix {dep} and run compose up again")
        if pending and time.monotonic() > deadline:
            dep, cond = key = next(iter(pending))
            raise fail(f"{dep} is not {cond.removeprefix('service_').replace('_', ' ')} after {timeout:g}s: {why[key]}",
                       f"not applied: {', '.join(left)}; `dockyard describe service {dep}` says why, "
                       "or give --wait-timeout more time")
        if pending:
            time.sleep(0.5)


@compose_app.command("up")
@command
def up(file: Optional[Path] = FileOpt, stack: Optional[str] = StackOpt,
       dry_run: bool = typer.Option(False, "--dry-run", help="check everything on the server, print the plan, change nothing"),
       prune: bool = typer.Option(False, "--prune", help="delete services of the stack the file no longer has"),
       take_over: bool = typer.Option(False, "--take-over", help="move services that belong to another stack (or none) "
                                                                   "into this one"),
       env_file: Optional[List[Path]] = EnvFileOpt, volume_root: Optional[str] = VolumeRootOpt,
       profile: Optional[List[str]] = ProfileOpt,
       wait_timeout: float = typer.Option(300.0, "--wait-timeout", min=0,
                                          help="seconds to wait for each dependency (depends_on) to be ready")) -> None:
    """Translate a compose file and apply its services as one stack, all or nothing.

    Every service is checked by the server first (spec, policy, stack ownership): one refusal
    and nothing is created. Then the services are applied in depends_on order, waiting for
    each dependency's condition (service_started, service_healthy, service_completed_successfully)
    before what depends on it. Keys Dockyard cannot honour are printed as warnings or refused.

    Example: dockyard compose up -f docker-compose.yml --stack shop

    Example: dockyard compose up --dry-run

    Example: dockyard compose up --volume-root /srv/dockyard
    """
    from orchestrator.cli.resources import apply_services, result_line

    path, result = translate(file, stack, env_files=env_file, volume_root=volume_root, applying=True,
                             profiles=profile)
    docs = {d["name"]: d for d in documents(result.services)}
    st = next(iter(docs.values()))["stack"]
    typer.echo(f"stack {st}: {len(docs)} service(s) from {path}" +
               (f", {len(result.warnings)} warning(s) above" if result.warnings else ""), err=True)
    if len(result.levels) > 1:
        typer.echo("order: " + " -> ".join(", ".join(level) for level in result.levels), err=True)
    if dry_run:  # the server checks every service, then the plan
        apply_services(list(result.services.items()), dry_run=True, prune=prune, take_over=take_over)
        return
    c = client()
    _apply(c, list(docs.values()), dry_run=True, take_over=take_over)  # everything checked before anything is created
    before = {n: c.get(f"/v1/services/{n}", ok404=True) for n in docs}
    for k, level in enumerate(result.levels):
        needs: dict[tuple[str, str], list[str]] = {}
        for name in level:
            for dep, cond in result.depends_on[name].items():
                needs.setdefault((dep, cond), []).append(name)
        if needs:
            _wait_for(c, needs, wait_timeout, [n for lv in result.levels[k:] for n in lv])
        for r in _apply(c, [docs[n] for n in level], dry_run=False, take_over=take_over):
            render.ok(result_line(r, before.get(r["name"])))
    if prune:
        for s in c.get("/v1/services", params={"stack": st}):
            if s["name"] not in docs:
                c.delete(f"/v1/services/{s['name']}")
                render.ok(f"service/{s['name']} deleted (no longer in stack {st})")


@compose_app.command("convert")
@command
def convert(file: Optional[Path] = FileOpt, stack: Optional[str] = StackOpt,
            output: Output = typer.Option(Output.yaml, "--output", "-o", help="yaml (for `dockyard apply -f`) or json"),
            env_file: Optional[List[Path]] = EnvFileOpt, volume_root: Optional[str] = VolumeRootOpt,
            profile: Optional[List[str]] = ProfileOpt) -> None:
    """Print the Dockyard services a compose file becomes, without applying anything.

    The YAML output is a manifest that `dockyard apply -f` takes as it is.

    Example: dockyard compose convert -f docker-compose.yml > stack.yaml && dockyard apply -f stack.yaml
    """
    if output not in (Output.yaml, Output.json):
        raise usage("compose convert prints yaml or json")
    _, result = translate(file, stack, env_files=env_file, volume_root=volume_root, profiles=profile)
    docs = documents(result.services)
    if len(result.levels) > 1:  # a manifest has no depends_on: say the order compose up would use
        typer.echo("order (compose up waits between levels): "
                   + " -> ".join(", ".join(level) for level in result.levels), err=True)
    if output == Output.json:
        typer.echo(render.to_json(docs))
    else:
        typer.echo("---\n".join(render.to_yaml(d) for d in docs), nl=False)


@compose_app.command("down")
@command
def down(file: Optional[Path] = FileOpt, stack: Optional[str] = StackOpt,
         wait: bool = typer.Option(False, "--wait", help="return only once the containers are gone"),
         env_file: Optional[List[Path]] = EnvFileOpt) -> None:
    """Delete the stack a compose file was brought up as.

    Example: dockyard compose down -f docker-compose.yml
    """
    from orchestrator.cli.resources import delete_stack
    from orchestrator.compose import ComposeError
    from orchestrator.compose.yaml_loader import project

    path = _path(file)
    try:  # only the stack's name: a file that no longer translates can still be taken down
        name = project(path, stack=stack, environ=dict(os.environ), env_files=env_file or None)
    except ComposeError as exc:
        raise fail(f"{path}: {exc}")
    delete_stack.__wrapped__(name, wait=wait, timeout=120.0)  # type: ignore[attr-defined]


def register(app: typer.Typer) -> None:
    app.add_typer(compose_app, name="compose", rich_help_panel=PANEL)

"""`dockyard compose up|convert|down`: run a Docker Compose file as a Dockyard stack."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from orchestrator.cli import render
from orchestrator.cli.client import command, fail, usage
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


def translate(file: Optional[Path], stack: Optional[str], quiet: bool = False):  # type: ignore[no-untyped-def]
    """Load and translate; print every warning (unless quiet). ComposeError becomes an error line."""
    from orchestrator.compose import ComposeError, load

    path = _path(file)
    try:
        result = load(path, stack=stack)
    except ComposeError as exc:
        raise fail(str(exc))
    if not quiet:
        for w in result.warnings:
            render.warn(w)
    return path, result


def documents(services: dict[str, dict]) -> list[dict]:
    """Service bodies as `dockyard apply` documents: the name first, then the body."""
    return [{"name": name, **body} for name, body in services.items()]


@compose_app.command("up")
@command
def up(file: Optional[Path] = FileOpt, stack: Optional[str] = StackOpt,
       dry_run: bool = typer.Option(False, "--dry-run", help="print what would change and change nothing"),
       prune: bool = typer.Option(False, "--prune", help="delete services of the stack the file no longer has")) -> None:
    """Translate a compose file and apply its services as one stack.

    Keys Dockyard cannot honour are printed as warnings; nothing is dropped silently.

    Example: dockyard compose up -f docker-compose.yml --stack shop

    Example: dockyard compose up --dry-run
    """
    from orchestrator.cli.resources import apply_services

    path, result = translate(file, stack)
    items = list(result.services.items())
    st = items[0][1]["stack"]
    typer.echo(f"stack {st}: {len(items)} service(s) from {path}" +
               (f", {len(result.warnings)} warning(s) above" if result.warnings else ""), err=True)
    apply_services(items, dry_run=dry_run, prune=prune)


@compose_app.command("convert")
@command
def convert(file: Optional[Path] = FileOpt, stack: Optional[str] = StackOpt,
            output: Output = typer.Option(Output.yaml, "--output", "-o", help="yaml (for `dockyard apply -f`) or json")) -> None:
    """Print the Dockyard services a compose file becomes, without applying anything.

    The YAML output is a manifest that `dockyard apply -f` takes as it is.

    Example: dockyard compose convert -f docker-compose.yml > stack.yaml && dockyard apply -f stack.yaml
    """
    if output not in (Output.yaml, Output.json):
        raise usage("compose convert prints yaml or json")
    _, result = translate(file, stack)
    docs = documents(result.services)
    if output == Output.json:
        typer.echo(render.to_json(docs))
    else:
        typer.echo("---\n".join(render.to_yaml(d) for d in docs), nl=False)


@compose_app.command("down")
@command
def down(file: Optional[Path] = FileOpt, stack: Optional[str] = StackOpt,
         wait: bool = typer.Option(False, "--wait", help="return only once the containers are gone")) -> None:
    """Delete the stack a compose file was brought up as.

    Example: dockyard compose down -f docker-compose.yml
    """
    from orchestrator.cli.resources import delete_stack

    _, result = translate(file, stack, quiet=True)
    name = next(iter(result.services.values()))["stack"]
    delete_stack.__wrapped__(name, wait=wait, timeout=120.0)  # type: ignore[attr-defined]


def register(app: typer.Typer) -> None:
    app.add_typer(compose_app, name="compose", rich_help_panel=PANEL)

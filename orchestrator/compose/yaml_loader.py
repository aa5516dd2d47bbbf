"""Reading a compose file: YAML the way Compose (Go) reads it, the variables (`.env` and the
environment), then `translate()`."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Callable, Mapping, Sequence

import yaml

from orchestrator.compose.common import ComposeError, Translation, stack_name
from orchestrator.compose.fields import read_env_file
from orchestrator.compose.interpolate import interpolate
from orchestrator.compose.service import translate


class Yaml12Loader(yaml.SafeLoader):
    """Safe loader with YAML 1.2 core-schema scalars, as Compose (Go) reads them: `no`,
    `yes`, `on` stay strings, `22:22` is not the base-60 integer 1342, `010` is ten and
    `2024-06-01` is a string, not a date."""


_Y = "tag:yaml.org,2002:"
Yaml12Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in (_Y + "bool", _Y + "int", _Y + "float", _Y + "timestamp")]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
# Order matters: the first matching resolver wins, and the float pattern also matches '1'.
Yaml12Loader.add_implicit_resolver(_Y + "bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))
Yaml12Loader.add_implicit_resolver(_Y + "int", re.compile(r"^(?:[-+]?[0-9]+|0x[0-9a-fA-F]+)$"), list("-+0123456789"))
Yaml12Loader.add_implicit_resolver(
    _Y + "float", re.compile(r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
                             r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"), list("-+0123456789."))
Yaml12Loader.add_constructor(
    _Y + "int", lambda loader, node: int(loader.construct_scalar(node), 0 if "x" in node.value else 10))


def variables(path: Path, environ: Mapping[str, str] | None, env_files: Sequence[str | Path] | None = None,
              warn: Callable[[str], None] = lambda _: None) -> dict[str, str]:
    """What `${VAR}` reads, as `docker compose` builds it: the `.env` file beside the compose file
    (or the given --env-file files, in order), then the caller's environment, which wins."""
    out: dict[str, str] = {}
    if env_files is None:
        default = path.parent / ".env"
        files: list[Path] = [default] if default.is_file() else []
    else:
        files = [Path(f) for f in env_files]
    for f in files:
        out.update(read_env_file(f, f"env file {f}", warn))
    out.update(environ or {})
    return out


def _read(path: Path) -> dict:
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=Yaml12Loader)  # noqa: S506 - safe loader
    except OSError as e:
        raise ComposeError(f"cannot read {path}: {e.strerror or e}") from None
    except yaml.YAMLError as e:
        raise ComposeError(f"{path} is not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise ComposeError(f"{path}: a compose file must be a mapping at the top level")
    return data


def _stack(path: Path, data: dict, stack: str | None, env: Mapping[str, str]) -> str:
    if stack is not None:
        return stack
    named = interpolate(data.get("name"), env, lambda _: None, "name")
    return stack_name(named if isinstance(named, str) and named else path.resolve().parent.name)


def project(path: str | Path, *, stack: str | None = None, environ: Mapping[str, str] | None = None,
            env_files: Sequence[str | Path] | None = None) -> str:
    """The stack a compose file is brought up as (what `load()` would choose), without translating it."""
    path = Path(path)
    return _stack(path, _read(path), stack, variables(path, environ, env_files))


def load(path: str | Path, *, stack: str | None = None, environ: Mapping[str, str] | None = None,
         env_files: Sequence[str | Path] | None = None, volume_root: str | None = None,
         profiles: Sequence[str] | None = None) -> Translation:
    """Read a compose file and translate it. The stack defaults, as Compose's project name
    does, to the top-level 'name', else to the file's directory name, made into a DNS label.
    `environ` (e.g. os.environ, passed by the CLI) and the `.env` file feed interpolation; the
    enabled profiles are `profiles`, else COMPOSE_PROFILES (comma-separated) from those variables."""
    path = Path(path)
    data = _read(path)
    notes: list[str] = []
    env = variables(path, environ, env_files, notes.append)
    if profiles is None:
        profiles = [p.strip() for p in env.get("COMPOSE_PROFILES", "").split(",") if p.strip()]
    result = translate(data, stack=_stack(path, data, stack, env), base_dir=path.parent, environ=env,
                       volume_root=volume_root, profiles=list(profiles))
    result.warnings[:0] = notes
    return result

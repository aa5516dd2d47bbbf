"""Reading a compose file: YAML the way Compose (Go) reads it, then `translate()`."""
from __future__ import annotations

import re
from pathlib import Path

import yaml

from orchestrator.compose.common import ComposeError, Translation, stack_name
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


def load(path: str | Path, *, stack: str | None = None) -> Translation:
    """Read a compose file and translate it. The stack defaults, as Compose's project name
    does, to the top-level 'name', else to the file's directory name, made into a DNS label."""
    path = Path(path)
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=Yaml12Loader)  # noqa: S506 - safe loader
    except OSError as e:
        raise ComposeError(f"cannot read {path}: {e.strerror or e}") from None
    except yaml.YAMLError as e:
        raise ComposeError(f"{path} is not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise ComposeError(f"{path}: a compose file must be a mapping at the top level")
    if stack is None:
        project = data.get("name")
        stack = stack_name(project if isinstance(project, str) and project else path.resolve().parent.name)
    return translate(data, stack=stack, base_dir=path.parent)

"""Values rendered into a package's manifests with Jinja2's sandbox.

The format is Jinja2 (`{{ values.replicas }}`, `{% if values.debug %}`…`{% endif %}`), run in
an `ImmutableSandboxedEnvironment`: a template sees only what it is given (`values`, `stack`,
`package`) and the package's own files (for `{% include %}`); it cannot read the file system or
the environment, reach Python internals (`__class__`, `__globals__`…) or change its inputs.
An undefined value is an error (StrictUndefined), never an empty string.
"""
from __future__ import annotations

import json
from typing import Any

import yaml
from jinja2 import DictLoader, StrictUndefined, TemplateError, TemplateNotFound, TemplateSyntaxError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from orchestrator.errors import ValidationFailed


class RenderError(ValidationFailed):
    """A template that does not render: its file, line and why."""


def _yaml(value: Any) -> str:
    """`{{ values.env | toyaml }}`: a value as one line of YAML (flow style)."""
    return yaml.safe_dump(value, default_flow_style=True, width=1 << 30).strip().removesuffix("...").strip()


def environment(files: dict[str, str]) -> ImmutableSandboxedEnvironment:
    env = ImmutableSandboxedEnvironment(loader=DictLoader(files), undefined=StrictUndefined, autoescape=False,
                                       keep_trailing_newline=True, auto_reload=False)
    env.filters["toyaml"] = _yaml
    env.filters["tojson"] = lambda v: json.dumps(v, sort_keys=True)
    env.filters["quote"] = lambda v: json.dumps(str(v))
    env.filters["required"] = _required
    env.globals.clear()  # no lipsum, cycler, joiner, namespace, dict, range: only what the context gives
    env.globals["range"] = range  # the sandbox caps it (MAX_RANGE)
    return env


def _required(value: Any, message: str = "a required value is missing") -> Any:
    if value is None or value == "":
        raise TemplateError(message)
    return value


def render(files: dict[str, str], manifests: list[str], context: dict[str, Any]) -> dict[str, str]:
    """Render each of `manifests` (names in `files`) with `context`; {name: text}."""
    env = environment(files)
    out = {}
    for name in manifests:
        try:
            out[name] = env.get_template(name).render(**context)
        except TemplateSyntaxError as exc:
            raise RenderError(f"{name}:{exc.lineno}: {exc.message}", [{"field": name, "problem": str(exc.message)}])
        except TemplateNotFound as exc:
            why = f"{{% include %}} of {exc.name!r}: a template may include only the package's own files"
            raise RenderError(f"{name}: {why}", [{"field": name, "problem": why}])
        except TemplateError as exc:  # undefined values, the sandbox's refusals, `required`
            raise RenderError(f"{name}: {exc}", [{"field": name, "problem": str(exc)}])
    return out


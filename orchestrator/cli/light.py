"""Parse the options of one process command (`dockyard agent`) without Typer's machinery.

Typer (0.29) converts every option through a pydantic TypeAdapter: parsing `dockyard agent`'s
16 options costs an agent ~8 MiB of resident memory for its whole life, a fifth of it
(docs/performance.md, Memory). The command's options stay declared once, as typer.Option
defaults in orchestrator/cli/main.py; this module reads those declarations and takes only the
plain cases: `--name value`, `--name=value`, a flag, a repeated list option, the environment
variable when the option is not given, the defaults. Anything else (--help, an unknown option,
a value that is not plainly a number, a number out of range) is left to Typer, which parses the
whole command line again and answers as it always does. tests/unit/test_agent_imports.py checks
that both parsers give the command the same values.
"""
from __future__ import annotations

import inspect
import os
import re
import typing
from pathlib import Path
from typing import Any, Callable

INT = re.compile(r"[+-]?\d+")
FLOAT = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")
TRUE, FALSE = {"1", "true", "t", "yes", "y", "on"}, {"0", "false", "f", "no", "n", "off"}


class NotPlain(Exception):
    """This command line is for Typer to parse (and perhaps to refuse)."""


def parse(command: Callable[..., Any], argv: list[str], environ: typing.Mapping[str, str] | None = None) -> dict[str, Any]:
    """The keyword arguments Typer would call `command` with for `argv` (what follows the
    command's name); NotPlain when that is not certain."""
    environ = os.environ if environ is None else environ
    hints = typing.get_type_hints(command)
    options: dict[str, tuple[str, Any, Any]] = {}  # "--flag" -> (parameter, its type, its OptionInfo)
    for name, p in inspect.signature(command).parameters.items():
        info = p.default
        decls = getattr(info, "param_decls", None)
        if not decls or any(not d.startswith("--") or "/" in d for d in decls) or p.kind != p.POSITIONAL_OR_KEYWORD:
            raise NotPlain(name)
        for d in decls:
            options[d] = (name, hints[name], info)
    given: dict[str, Any] = {}
    args = list(argv)
    while args:
        arg = args.pop(0)
        flag, eq, inline = arg.partition("=")
        if flag not in options:
            raise NotPlain(arg)
        name, kind, _ = options[flag]
        if kind is bool:
            if eq:
                raise NotPlain(arg)
            given[name] = "true"
            continue
        if eq:
            value = inline
        elif args:
            value = args.pop(0)
        else:
            raise NotPlain(arg)
        if _is_list(kind):
            given.setdefault(name, []).append(value)
        else:
            given[name] = value
    out: dict[str, Any] = {}
    for name, kind, info in {v[0]: v for v in options.values()}.values():
        if name in given:
            raw = given[name]
        elif info.envvar and environ.get(info.envvar):  # an empty variable is no value (as Click)
            env = environ[info.envvar]
            raw = env.split() if _is_list(kind) else env
        else:
            default = info.default
            out[name] = list(default) if isinstance(default, (list, tuple)) else default
            continue
        out[name] = [_convert(str, v, info) for v in raw] if _is_list(kind) else _convert(kind, raw, info)
    return out


def _is_list(kind: Any) -> bool:
    return typing.get_origin(kind) is list


def _convert(kind: Any, value: str, info: Any) -> Any:
    if typing.get_origin(kind) is typing.Union:  # Optional[X]: a given value is an X
        args = [a for a in typing.get_args(kind) if a is not type(None)]
        if len(args) != 1:
            raise NotPlain(value)
        kind = args[0]
    if kind is str:
        return value
    if kind is Path:
        return Path(value)
    if kind is bool:
        low = value.strip().lower()
        if low in TRUE or low in FALSE:
            return low in TRUE
        raise NotPlain(value)
    if kind is int and INT.fullmatch(value):
        number: float = int(value)
    elif kind is float and FLOAT.fullmatch(value):
        number = float(value)
    else:
        raise NotPlain(value)
    if (info.min is not None and number < info.min) or (info.max is not None and number > info.max):
        raise NotPlain(value)  # Typer says what the range is
    return number

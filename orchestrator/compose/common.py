"""What every part of the translator shares: the error, the result, and small checks of raw YAML values."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable

Warn = Callable[[str], None]


class ComposeError(ValueError):
    """The compose input is malformed or cannot be expressed; the message says where."""


@dataclass
class Translation:
    services: dict[str, dict] = field(default_factory=dict)  # name -> PUT /v1/services/{name} body
    warnings: list[str] = field(default_factory=list)
    # name -> {dependency: condition}; conditions are depends.CONDITIONS
    depends_on: dict[str, dict[str, str]] = field(default_factory=dict)
    levels: list[list[str]] = field(default_factory=list)  # apply order: each level after the one before


def fail(where: str, msg: str) -> ComposeError:
    return ComposeError(f"{where}: {msg}")


def str_value(value: Any, where: str) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):  # Compose writes booleans the way YAML spells them
        return "true" if value else "false"
    if isinstance(value, (str, int, float)):
        return str(value)
    raise fail(where, f"value must be a string or a number, not {type(value).__name__}")


def mapping(value: Any, where: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise fail(where, f"must be a mapping, not {type(value).__name__}")
    return value


def boolean(value: Any, where: str) -> bool:
    if isinstance(value, str) and value.lower() in ("true", "false"):  # an interpolated '${DEBUG:-false}'
        return value.lower() == "true"
    if not isinstance(value, bool):
        raise fail(where, "must be true or false")
    return value


def extra_keys(d: dict, known: set[str], where: str, warn: Warn) -> None:
    for key in d:
        if key not in known and not str(key).startswith("x-"):
            warn(f"{where}: '{key}' is not supported and was not applied")


def non_negative_int(value: Any, where: str) -> int:
    if isinstance(value, str) and re.fullmatch(r"[0-9]{1,18}", value.strip()):  # an interpolated '${REPLICAS:-2}'
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise fail(where, f"must be a non-negative integer, not {value!r}")
    return value


def label(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:63].strip("-")


def stack_name(text: str) -> str:
    """Any text (a directory or project name) made into a DNS label."""
    result = label(text)
    if not result:
        raise ComposeError(f"cannot make a stack name from {text!r}; pass stack= explicitly")
    return result

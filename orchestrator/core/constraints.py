"""Placement constraints on node labels: parsing and matching.

Syntax (one string per constraint):
  zone==a            label equals
  zone!=a            label differs (or is absent)
  zone in (a, b)     label is one of
  zone exists        label is present (any value)
The pseudo-label `node.name` matches the node's name.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal, Mapping

_KEY = r"[A-Za-z0-9][A-Za-z0-9._/-]*"
_EQ = re.compile(rf"^\s*({_KEY})\s*(==|!=)\s*(\S+)\s*$")
_IN = re.compile(rf"^\s*({_KEY})\s+in\s+\(?\s*([^()]*?)\s*\)?\s*$")
_EXISTS = re.compile(rf"^\s*({_KEY})\s+exists\s*$")


@dataclass(frozen=True)
class Constraint:
    key: str
    op: Literal["==", "!=", "in", "exists"]
    values: tuple[str, ...] = ()
    text: str = ""

    def matches(self, labels: Mapping[str, str], node_name: str = "") -> bool:
        value = node_name if self.key == "node.name" else labels.get(self.key)
        if self.op == "exists":
            return value is not None
        if self.op == "==":
            return value == self.values[0]
        if self.op == "!=":
            return value != self.values[0]
        return value in self.values


def parse_constraint(text: str) -> Constraint:
    """Parse one constraint; ValueError with a readable message if malformed."""
    if not isinstance(text, str) or len(text) > 512:
        raise ValueError("a constraint must be a string of at most 512 characters")
    if m := _EQ.match(text):
        return Constraint(m.group(1), m.group(2), (m.group(3),), text.strip())  # type: ignore[arg-type]
    if m := _EXISTS.match(text):
        return Constraint(m.group(1), "exists", (), text.strip())
    if m := _IN.match(text):
        values = tuple(v.strip() for v in m.group(2).split(",") if v.strip())
        if values:
            return Constraint(m.group(1), "in", values, text.strip())
    raise ValueError(
        f"invalid constraint {text!r}: use 'key==value', 'key!=value', 'key in (a, b)' or 'key exists'"
    )

"""Variable interpolation in a compose file, as `docker compose` does it (compose-go's template rules).

Every string value (never a key) is expanded against a mapping of variables that the caller
builds (the process environment over the `.env` file beside the compose file, see
yaml_loader): `$VAR`, `${VAR}`, `${VAR:-default}` (unset or empty), `${VAR-default}` (unset),
`${VAR:?message}` / `${VAR?message}` (an error naming the variable), `${VAR:+alt}` /
`${VAR+alt}`, and `$$` for a literal `$`. Defaults and messages may hold further references.
A `$` followed by anything else is an error, as in Compose (escape it as `$$`). An unset
variable without a default becomes '' with one warning, as in Compose.
"""
from __future__ import annotations

import re
from typing import Any, Mapping

from orchestrator.compose.common import ComposeError, Warn

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_OPS = (":-", ":?", ":+", "-", "?", "+")


class _Template:
    """One string's expansion; `where` names the place in the file for every error."""

    def __init__(self, env: Mapping[str, str], where: str, unset: list[str]):
        self.env, self.where, self.unset = env, where, unset

    def fail(self, text: str, msg: str) -> ComposeError:
        return ComposeError(f"{self.where}: {msg} in {text!r} (a literal '$' is written '$$')")

    def expand(self, text: str) -> str:
        out: list[str] = []
        i = 0
        while (j := text.find("$", i)) >= 0:
            out.append(text[i:j])
            nxt = text[j + 1:j + 2]
            if nxt == "$":
                out.append("$")
                i = j + 2
            elif nxt == "{":
                end = self._closing(text, j + 2)
                out.append(self._braced(text, text[j + 2:end]))
                i = end + 1
            elif m := _NAME.match(text, j + 1):
                out.append(self._lookup(m.group()))
                i = m.end()
            else:
                raise self.fail(text, "invalid interpolation: '$' must be followed by a name, '{' or '$'")
        out.append(text[i:])
        return "".join(out)

    def _closing(self, text: str, start: int) -> int:
        depth, k = 1, start
        while k < len(text):
            if text.startswith("${", k):
                depth, k = depth + 1, k + 2
                continue
            if text[k] == "}":
                depth -= 1
                if depth == 0:
                    return k
            k += 1
        raise self.fail(text, "invalid interpolation: '${' without a closing '}'")

    def _lookup(self, name: str) -> str:
        if name in self.env:
            return self.env[name]
        if name not in self.unset:
            self.unset.append(name)
        return ""

    def _braced(self, text: str, body: str) -> str:
        m = _NAME.match(body)
        if not m:
            raise self.fail(text, f"invalid interpolation '${{{body}}}': a variable name is needed")
        name, rest = m.group(), body[m.end():]
        if not rest:
            return self._lookup(name)
        op = next((o for o in _OPS if rest.startswith(o)), None)
        if op is None:
            raise self.fail(text, f"invalid interpolation '${{{body}}}': use ${{NAME}}, ${{NAME:-default}}, "
                                  "${NAME-default}, ${NAME:?message} or ${NAME:+alternative}")
        arg = rest[len(op):]
        value = self.env.get(name)
        missing = value is None or (op.startswith(":") and value == "")
        if op in (":-", "-"):
            return self.expand(arg) if missing else value  # type: ignore[return-value]
        if op in (":?", "?"):
            if missing:
                msg = self.expand(arg) or ("is empty" if value == "" else "is not set")
                raise ComposeError(f"{self.where}: required variable {name} is missing a value: {msg}")
            return value  # type: ignore[return-value]
        return "" if missing else self.expand(arg)  # ':+' and '+'


def interpolate(data: Any, env: Mapping[str, str], warn: Warn, where: str = "") -> Any:
    """A copy of `data` with every string value expanded; ComposeError names the place and the variable."""
    unset: list[str] = []
    out = _walk(data, env, where, unset)
    for name in unset:
        warn(f"the variable {name} is not set; it was replaced by an empty string")
    return out


def _walk(value: Any, env: Mapping[str, str], where: str, unset: list[str]) -> Any:
    if isinstance(value, str):
        # 'services.web.image' is said 'web.image', as every other message of the translator says it
        place = where.removeprefix("services.") if where.count(".") > 1 or "[" in where else where
        return _Template(env, place or "the file", unset).expand(value) if "$" in value else value
    if isinstance(value, dict):
        return {k: _walk(v, env, f"{where}.{k}" if where else str(k), unset) for k, v in value.items()}
    if isinstance(value, list):
        return [_walk(v, env, f"{where}[{i}]", unset) for i, v in enumerate(value)]
    return value

"""Pure helpers of `dockyard apply`: read manifest documents, check them, plan what would change.

No I/O here: the commands read files and ask the server, these functions decide.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import yaml

# keys of a ServiceApply body that are bookkeeping, not the service's spec
BOOKKEEPING = ("replicas", "version", "change_cause", "stack")


class DocumentError(ValueError):
    """The manifest is malformed; the message names the document and the field."""


# ------------------------------------------------------------------- reading

def parse_documents(text: str, source: str = "input") -> list[dict]:
    """YAML (several documents separated by `---`) or JSON (an object or a list of objects)."""
    stripped = text.lstrip()
    try:
        if stripped[:1] in ("{", "["):
            try:
                docs: list[Any] = [json.loads(text)]
            except ValueError:
                docs = list(yaml.safe_load_all(text))
        else:
            docs = list(yaml.safe_load_all(text))
    except yaml.YAMLError as exc:
        raise DocumentError(f"{source} is not valid YAML or JSON: {str(exc).splitlines()[0]}") from None
    if len(docs) == 1 and isinstance(docs[0], list):
        docs = docs[0]
    docs = [d for d in docs if d is not None]
    if not docs:
        raise DocumentError(f"{source} holds no documents")
    for n, d in enumerate(docs, 1):
        if not isinstance(d, dict):
            raise DocumentError(f"{source}: document {n} must be a mapping, not {type(d).__name__}")
    return docs


def from_export(doc: dict) -> dict:
    """Accept what `dockyard get services NAME -o yaml` prints: its `spec` becomes the body."""
    if isinstance(doc.get("spec"), dict) and "image" not in doc:
        body = dict(doc["spec"])
        for k in ("name", "replicas", "stack"):
            if doc.get(k) is not None:
                body[k] = doc[k]
        return body
    return dict(doc)


def prepare(docs: list[dict], stack: str | None = None) -> list[tuple[str, dict]]:
    """(name, body) per document, checked against ServiceApply; `name` is taken out of the body.

    One document may stand alone; several form a stack, named by `stack` or by each document's
    `stack` key (they must agree)."""
    from pydantic import ValidationError

    from orchestrator.spec import ServiceApply, dns_label

    out: list[tuple[str, dict]] = []
    problems: list[str] = []
    for n, raw in enumerate(docs, 1):
        body = from_export(raw)
        name = body.pop("name", None)
        where = f"document {n}" + (f" ({name})" if isinstance(name, str) else "")
        if not isinstance(name, str) or not name:
            problems.append(f"{where}: needs a 'name' key (the service's name)")
            continue
        try:
            dns_label(name)
        except ValueError as exc:
            problems.append(f"{where}: name: {exc}")
            continue
        if stack is not None:
            if body.get("stack") not in (None, stack):
                problems.append(f"{where}: says stack {body['stack']!r} but --stack is {stack!r}")
                continue
            body["stack"] = stack
        try:
            ServiceApply.model_validate(body)
        except ValidationError as exc:
            for e in exc.errors():
                path = ".".join(str(p) for p in e["loc"]) or "body"
                problem = "unknown field" if e.get("type") == "extra_forbidden" else e["msg"]
                problems.append(f"{where}: {path}: {problem}")
            continue
        out.append((name, body))
    names = [n for n, _ in out]
    for dup in sorted({n for n in names if names.count(n) > 1}):
        problems.append(f"service {dup!r} is defined more than once")
    if not problems and len(docs) > 1:
        stacks = {b.get("stack") for _, b in out}
        if None in stacks:
            missing = [n for n, b in out if b.get("stack") is None]
            problems.append("several documents form a stack: give --stack NAME or a 'stack' key in every "
                            f"document (missing in {', '.join(missing)})")
        elif len(stacks) > 1:
            problems.append(f"the documents name different stacks ({', '.join(sorted(stacks))}); one file is one stack")
    if problems:
        raise DocumentError("\n".join(problems))
    return out


def stack_of(prepared: list[tuple[str, dict]]) -> str | None:
    stacks = {b.get("stack") for _, b in prepared}
    return stacks.pop() if len(stacks) == 1 else None


# ------------------------------------------------------------------- planning

@dataclass
class Change:
    op: str  # '+' added, '-' removed, '~' changed
    field: str
    old: Any = None
    new: Any = None


@dataclass
class ServicePlan:
    name: str
    action: str  # create | update | unchanged | delete
    changes: list[Change] = field(default_factory=list)
    new_revision: bool = False


def flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    """Dotted paths to leaves; lists of mappings are indexed (ports[0].host_port), other lists are leaves."""
    if isinstance(d, dict):
        if not d:
            return {prefix: {}} if prefix else {}
        out: dict[str, Any] = {}
        for k, v in d.items():
            out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    if isinstance(d, list) and d and all(isinstance(x, dict) for x in d):
        out = {}
        for i, v in enumerate(d):
            out.update(flatten(v, f"{prefix}[{i}]"))
        return out
    return {prefix: d}


def diff(old: dict, new: dict) -> list[Change]:
    """Leaf by leaf. An empty or null value that gains or loses children ('env: {}' becoming
    'env.A: "1"') and null leaves that appear or vanish are not shown: they are no change to a reader."""
    fo, fn = flatten(old), flatten(new)
    out = []
    for k in sorted(fo.keys() | fn.keys(), key=_path_key):
        if k not in fn:
            if fo[k] is not None and not _empty_parent(k, fo[k], fn):
                out.append(Change("-", k, fo[k], None))
        elif k not in fo:
            if fn[k] is not None and not _empty_parent(k, fn[k], fo):
                out.append(Change("+", k, None, fn[k]))
        elif fo[k] != fn[k]:
            out.append(Change("~", k, fo[k], fn[k]))
    return out


def _empty_parent(key: str, v: Any, other: dict[str, Any]) -> bool:
    return v in ({}, []) and any(o.startswith(key + ".") or o.startswith(key + "[") for o in other)


def _path_key(p: str) -> tuple:
    # image first (what people look for), then alphabetical with list indexes in numeric order
    import re

    return (p != "image", [int(x) if x.isdigit() else x for x in re.split(r"[\[\].]+", p) if x])


def desired(body: dict) -> tuple[dict, int, str | None]:
    """(spec as the server will store it, replicas, stack) for an apply body."""
    from orchestrator.spec import ServiceApply

    m = ServiceApply.model_validate(body)
    return m.spec().model_dump(mode="json"), m.replicas, m.stack


def plan_service(name: str, current: dict | None, body: dict) -> ServicePlan:
    """What `PUT /v1/services/{name}` with `body` would change, given the service now (None: absent)."""
    from orchestrator.spec import ServiceApply

    spec, replicas, stack = desired(body)
    if current is None:
        given = ServiceApply.model_validate(body).model_dump(mode="json", exclude_unset=True,
                                                             exclude={"version", "change_cause"})
        given.setdefault("replicas", replicas)
        return ServicePlan(name, "create", [Change("+", k, None, v) for k, v in sorted(
            flatten(given).items(), key=lambda kv: (kv[0] not in ("image", "replicas"), _path_key(kv[0])))], True)
    changes = diff(current.get("spec") or {}, spec)
    new_revision = bool(changes)
    if replicas != current.get("replicas"):
        changes.append(Change("~", "replicas", current.get("replicas"), replicas))
    if stack != current.get("stack"):  # the server allows it only with --take-over
        op = "+" if not current.get("stack") else "-" if stack is None else "~"
        changes.append(Change(op, "stack", current.get("stack"), stack))
    return ServicePlan(name, "update" if changes else "unchanged", changes, new_revision)


def plan_delete(current: dict) -> ServicePlan:
    return ServicePlan(current["name"], "delete", [], False)


# ------------------------------------------------------------------- rendering

_SIGN = {"create": "+", "update": "~", "unchanged": "=", "delete": "-"}


def value(v: Any) -> str:
    return json.dumps(v, ensure_ascii=False, default=str)


def render_plan(plans: list[ServicePlan]) -> str:
    """A nomad-plan-like, unified-diff-like view. Lines start with + - ~ = so colour is easy."""
    lines: list[str] = []
    for p in plans:
        note = p.action
        if p.action == "update":
            note = "update: new revision, rolling update" if p.new_revision else "update in place: no new revision"
        elif p.action == "delete":
            note = "delete: not in the file, stack pruned"
        lines.append(f"{_SIGN[p.action]} service {p.name!r} ({note})")
        width = max((len(c.field) for c in p.changes), default=0) + 1
        for c in p.changes:
            label = f"{c.field}:".ljust(width + 1)
            if c.op == "+":
                lines.append(f"    + {label}{value(c.new)}")
            elif c.op == "-":
                lines.append(f"    - {label}{value(c.old)}")
            else:
                lines.append(f"    ~ {label}{value(c.old)} => {value(c.new)}")
    counts = {a: sum(1 for p in plans if p.action == a) for a in ("create", "update", "delete", "unchanged")}
    summary = ", ".join(f"{n} to {a}" if a != "unchanged" else f"{n} unchanged" for a, n in counts.items() if n)
    lines.append("")
    lines.append(f"Plan: {summary or 'nothing'}." + ("" if any(p.action != "unchanged" for p in plans) else
                                                    " Applying would change nothing."))
    return "\n".join(lines)

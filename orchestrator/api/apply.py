"""POST /v1/apply: create or update several services at once, all or nothing.

Every service of the body is checked first (its spec, its name, duplicates, the host-privilege
policy, its version, the stack that owns it); one refusal refuses the whole batch and nothing is
written. Otherwise all of them are written in one transaction through the same path as
PUT /v1/services/{name} (service_ops.plan/write): same revisions, same events.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, Depends
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from orchestrator import policy, service_ops as ops
from orchestrator.api.deps import State, YamlRoute, namespace, role, state
from orchestrator.api.services import ServiceOut, change_cause
from orchestrator.auth import Principal
from orchestrator.errors import Conflict, DockyardError, Forbidden, ValidationFailed
from orchestrator.namespaces import key
from orchestrator.spec import ServiceApply, dns_label

# mounted at /v1 (namespace default) and at /v1/namespaces/{ns} (api/app.py)
router = APIRouter(tags=["services"], route_class=YamlRoute)
MAX_SERVICES = 1000
ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "missing or invalid token"},
    403: {"description": "role too low, or a spec asks for host privileges the server's policy refuses"},
    409: {"description": "a stale version, or a service that belongs to another stack"},
    413: {"description": "body over the size limit"},
    422: {"description": "an invalid service; details[].path is [\"services\", index, field...]"},
}


class ApplyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    services: list[Any] = Field(max_length=MAX_SERVICES, description=(
        "each: a `name` plus the body of PUT /v1/services/{name} (spec fields, replicas, stack, version, "
        "change_cause)"), examples=[[{"name": "web", "image": "nginx:1.27", "replicas": 2, "stack": "shop"}]])
    dry_run: bool = Field(default=False, description="check everything and answer what would happen; write nothing")
    take_over: bool = Field(default=False, description=(
        "let each service's `stack` (or its absence) win over the stack that owns it now: moves services "
        "between stacks, into one, or out of one"))


class ApplyResult(BaseModel):
    name: str
    action: str = Field(description="created | updated | unchanged (with dry_run: what would be done)")
    service: ServiceOut


class ApplyOut(BaseModel):
    results: list[ApplyResult]


@dataclass
class Refusal:
    """Why one service of the batch is refused: its index, its name, the error, and each bad
    field's path inside the service (kept as a path: env names may hold dots)."""

    index: int
    name: str | None
    error: type[DockyardError]
    message: str
    problems: list[tuple[list, str]] = field(default_factory=list)


RANK = {ValidationFailed: 0, Forbidden: 1, Conflict: 2}  # which status a mixed batch answers with


def _split(dotted: str) -> list:
    return [int(p) if p.isdigit() else p for p in dotted.split(".")] if dotted else []


def refusal_of(index: int, name: str | None, exc: DockyardError) -> Refusal:
    problems = [(_split(d.get("field", "")), d.get("problem", "")) for d in exc.details] or [([], exc.message)]
    return Refusal(index, name, type(exc), exc.message, problems)


def parse(raw: list[Any], cause: str | None) -> tuple[list[tuple[int, str, ServiceApply]], list[Refusal]]:
    """The batch's (index, name, body) that read as services, and a Refusal for each that does not."""
    items: list[tuple[int, str, ServiceApply]] = []
    refused: list[Refusal] = []
    seen: dict[str, int] = {}
    for i, item in enumerate(raw):
        if not isinstance(item, dict):
            refused.append(Refusal(i, None, ValidationFailed, "a service must be an object",
                                   [([], f"must be an object (a name plus the body of PUT /v1/services/NAME), "
                                         f"not {type(item).__name__}")]))
            continue
        name = item.get("name")
        problems: list[tuple[list, str]] = []
        if not isinstance(name, str) or not name:
            problems.append((["name"], "every service needs a name (a DNS label)"))
            name = None
        else:
            try:
                dns_label(name)
            except ValueError as exc:
                problems.append((["name"], str(exc)))
            if name in seen:
                problems.append((["name"], f"service {name!r} is listed twice (also services[{seen[name]}])"))
            else:
                seen[name] = i
        body = {k: v for k, v in item.items() if k != "name"}
        if cause and body.get("change_cause") is None:  # the body's field wins over the header
            body["change_cause"] = cause
        try:
            parsed = ServiceApply.model_validate(body)
        except ValidationError as exc:
            for e in exc.errors():
                problems.append((list(e["loc"]), "unknown field" if e.get("type") == "extra_forbidden" else e["msg"]))
        if problems:
            msg = "; ".join(f"{'.'.join(map(str, path)) or 'service'}: {what}" for path, what in problems[:5])
            refused.append(Refusal(i, name, ValidationFailed, msg, problems))
        else:
            items.append((i, name, parsed))  # type: ignore[arg-type]
    return items, refused


def refuse(refusals: list[Refusal], total: int) -> DockyardError:
    """One error for the whole batch: the status of the first kind of trouble (invalid input,
    then policy, then conflicts), a message naming each refused service, and every bad field
    with its path from the body's root (["services", index, ...])."""
    refusals = sorted(refusals, key=lambda r: r.index)
    kind = min((r.error for r in refusals), key=lambda k: RANK.get(k, len(RANK)))
    details = []
    for r in refusals:
        for path, problem in r.problems:
            full = ["services", r.index, *path]
            details.append({"field": ".".join(map(str, full)), "problem": problem, "path": full, "service": r.name})

    def who(r: Refusal) -> str:
        return f"service {r.name!r} (services[{r.index}])" if r.name else f"services[{r.index}]"

    if len(refusals) == 1:
        message = f"nothing was applied: {who(refusals[0])}: {refusals[0].message}"
    else:
        message = (f"nothing was applied: {len(refusals)} of {total} services refused: "
                   + "; ".join(f"{who(r)}: {r.message}" for r in refusals[:5])
                   + (f"; and {len(refusals) - 5} more" if len(refusals) > 5 else ""))
    extra = {"reason": "policy"} if kind is Forbidden else {}
    return kind(message, details, **extra)


class _Rehearsed(Exception):
    """Raised out of a dry run's transaction so that it rolls back, carrying the answer."""

    def __init__(self, results: list[dict]):
        self.results = results


def run(st: State, body: ApplyIn, p: Principal, cause: str | None, ns: str = "default") -> list[dict]:
    items, refused = parse(body.services, cause)
    pairs = [(key(ns, name), b) for _, name, b in items]
    check = policy.checker(st.settings, p)
    now = time.time()

    def decide(s, lock: bool) -> list[ops.Plan]:  # type: ignore[no-untyped-def]
        outcomes = ops.plan_many(s, pairs, lock=lock, check=check, take_over=body.take_over)
        bad = refused + [refusal_of(i, name, o) for (i, name, _), o in zip(items, outcomes)
                         if isinstance(o, DockyardError)]
        if bad:
            raise refuse(bad, len(body.services))
        return outcomes  # type: ignore[return-value]

    def look(s):  # type: ignore[no-untyped-def]
        # refusals and an unchanged batch (re-applying a stack) are answered from a plain read,
        # out of the database's write lock, as PUT's no-op apply is
        plans = decide(s, lock=False)
        if any(x.action != "unchanged" for x in plans):
            return None
        return ops.results(s, [(x.action, x.svc) for x in plans], time.time())

    out = st.db.run(look)
    if out is not None:
        return out

    def write(s):  # type: ignore[no-untyped-def]
        plans = decide(s, lock=True)  # again, under the rows' locks: the state may have moved since
        done = ops.results(s, ops.write_many(s, plans, actor=p.label, now=now,
                                             history_limit=st.settings.history_limit), time.time())
        if body.dry_run:
            raise _Rehearsed(done)  # what GET would show after the apply, then rolled back
        return done

    try:
        out = st.db.run(write)
    except _Rehearsed as r:
        return r.results
    st.loop.kick()  # committed: the loop places what changed now, not at its next tick
    return out


@router.post("/apply", response_model=ApplyOut, responses=ERRORS)
async def apply_services(body: ApplyIn, cause: str | None = Depends(change_cause), st: State = Depends(state),
                         p: Principal = Depends(role("operator")), ns: str = Depends(namespace)) -> dict:
    """Create or update every service of the body in one transaction: all of them or none.

    Each service is checked as PUT /v1/services/{name} checks it, plus duplicate names and
    stack ownership (a service that belongs to another stack is a 409). A refusal names the
    service and lists each bad field with its path (["services", index, field...]); nothing is
    written. `dry_run` answers what would happen and writes nothing.
    """
    return {"results": await run_in_threadpool(run, st, body, p, cause, ns)}

"""What each node should run: its assignments, read for many nodes in one transaction.

An assignment is an instance the node should run, with the spec of its revision. Agents
get the whole list whenever their node's generation moves (api/agent.py); after a pass that
placed work on every node, a thousand agents ask at once, so the reads are batched
(orchestrator/batching.py) and specs cached.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Iterator

from sqlalchemy import select
from sqlalchemy.orm import Session

from orchestrator.models import Instance, Revision, Service

# (service, its created_at, revision) -> spec. A revision is immutable, and created_at tells a
# re-created service (whose revision numbers start again at 1) from the deleted one, so
# entries never go stale; they only pile up, by a few KiB per revision ever assigned.
_SPECS: dict[tuple[str, float, int], dict] = {}
_SPECS_MAX = 20_000
IN_CHUNK = 500  # names per IN (...) list: well under SQLite's bound-parameter limit


def chunks(names: list[str]) -> Iterator[list[str]]:
    """`names` in slices short enough for one IN (...) list each."""
    for k in range(0, len(names), IN_CHUNK):
        yield names[k:k + IN_CHUNK]


def read(s: Session, nodes: list[str]) -> dict[str, list[dict]]:
    """node -> every instance it should run (desired running), with its spec."""
    wanted_nodes = sorted(set(nodes))
    rows = []
    for chunk in chunks(wanted_nodes):
        rows += s.execute(select(Instance.node_name, Instance.id, Instance.service_name, Instance.slot,
                                 Instance.revision, Instance.restart_count)
                          .where(Instance.node_name.in_(chunk), Instance.desired_state == "running")).all()
    out: dict[str, list[dict]] = {n: [] for n in wanted_nodes}
    if not rows:
        return out
    names = sorted({r.service_name for r in rows})
    born: dict[str, float] = {}
    for chunk in chunks(names):
        born.update(s.execute(select(Service.name, Service.created_at).where(Service.name.in_(chunk))).all())
    wanted = {(r.service_name, born[r.service_name], r.revision) for r in rows if r.service_name in born}
    missing = wanted - _SPECS.keys()
    if missing:
        if len(_SPECS) > _SPECS_MAX:
            _SPECS.clear()
        need = defaultdict(set)
        for name, _, number in missing:
            need[name].add(number)
        for name, numbers in need.items():
            for r in s.execute(select(Revision.number, Revision.spec)
                               .where(Revision.service_name == name, Revision.number.in_(sorted(numbers)))):
                _SPECS[(name, born[name], r.number)] = r.spec
    for r in rows:
        spec = _SPECS.get((r.service_name, born.get(r.service_name, -1.0), r.revision))
        if spec is not None:  # a revision pruned from history has nothing to run
            out[r.node_name].append({"instance_id": r.id, "service": r.service_name, "slot": r.slot,
                                     "revision": r.revision, "spec": spec, "restart_count": r.restart_count})
    return out

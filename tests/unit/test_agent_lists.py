"""The agent lists the engine when something it did not do happened, not after each of its own
actions: starting N containers used to list all of them after every start (O(N^2) in the
engine the starts wait on). A fake engine counts the lists; tests/integration runs the real one."""
from __future__ import annotations

import itertools

import agent.main as agent_main
from agent.main import Agent, AgentConfig
from agent.types import Assignment, Observed


class FakeEngine:
    def __init__(self) -> None:
        self.containers: dict[str, Observed] = {}
        self.lists = 0
        self.ids = itertools.count()

    def list(self) -> list[Observed]:
        self.lists += 1
        return list(self.containers.values())

    def run(self, a: Assignment, observe: bool = True) -> Observed:
        o = Observed(a.instance_id, a.service, a.revision, a.slot, f"c{next(self.ids)}", "running")
        self.containers[o.container_id] = o
        return o

    def remove(self, cid: str, timeout) -> None:  # type: ignore[no-untyped-def]
        self.containers.pop(cid, None)

    def inspect(self, cid: str) -> Observed | None:
        return self.containers.get(cid)

    def probe_address(self, cid: str, port: int):  # type: ignore[no-untyped-def]
        return None


class Reports:
    def __init__(self) -> None:
        self.sent: list[list[dict]] = []

    def sync(self, known, wait, report):  # type: ignore[no-untyped-def]
        self.sent.append(report)
        return "g1", None, 1.0


def make(n: int) -> tuple[Agent, FakeEngine, Reports]:
    engine = FakeEngine()
    a = Agent(AgentConfig(server="http://127.0.0.1:9", join_token="j", node_name="n1"), driver=engine)  # type: ignore[arg-type]
    a.client = Reports()  # type: ignore[assignment]
    a.pool.shutdown()
    a.pool = Inline()  # type: ignore[assignment]
    a._take("g1", [Assignment(f"i{k}", "web", k, 1, {"image": "x"}) for k in range(n)])
    return a, engine, a.client  # type: ignore[return-value]


class Inline:
    """Runs each action when the test says so, like a pool whose threads finish one by one."""

    def __init__(self) -> None:
        self.queue: list = []

    def submit(self, fn):  # type: ignore[no-untyped-def]
        self.queue.append(fn)

    def finish_one(self) -> bool:
        if not self.queue:
            return False
        self.queue.pop(0)()
        return True

    def shutdown(self, **_) -> None:  # type: ignore[no-untyped-def]
        pass


def test_starting_many_lists_once_and_reports_them_all(monkeypatch):
    monkeypatch.setattr(agent_main, "REPORT_SPACING", 0.0)
    a, engine, reports = make(50)
    a.reconcile_once()  # the first pass lists, and submits 50 starts
    assert engine.lists == 1 and len(a.pool.queue) == 50  # type: ignore[attr-defined]
    while a.pool.finish_one():  # type: ignore[attr-defined]
        a._event("start", f"c{len(engine.containers) - 1}", f"i{len(engine.containers) - 1}")  # our own
        a.reconcile_once()  # a pass after every start, as the wake-ups make
    assert engine.lists == 1  # no list per start
    assert len(reports.sent[-1]) == 50 and {i["state"] for i in reports.sent[-1]} == {"running"}


def test_an_event_the_agent_did_not_cause_makes_the_next_pass_list():
    a, engine, _ = make(1)
    a.reconcile_once()
    a.pool.finish_one()  # type: ignore[attr-defined]
    a.reconcile_once()
    assert engine.lists == 1
    (cid,) = engine.containers
    engine.containers[cid] = Observed("i0", "web", 1, 0, cid, "exited", exit_code=137)  # docker kill
    a._event("die", cid, "i0")
    a.reconcile_once()
    assert engine.lists == 2 and len(a.pool.queue) == 1  # type: ignore[attr-defined]  # the restart


def test_removals_need_no_list_and_the_list_stays_a_safety_net(monkeypatch):
    a, engine, _ = make(3)
    a.reconcile_once()
    while a.pool.finish_one():  # type: ignore[attr-defined]
        pass
    a._take("g2", [])  # scaled to 0
    a.reconcile_once()
    while a.pool.finish_one():  # type: ignore[attr-defined]
        pass
    a.reconcile_once()
    assert engine.containers == {} and a.observed == [] and engine.lists == 1
    clock = agent_main.time.monotonic() + agent_main.LIST_EVERY + 0.1
    monkeypatch.setattr(agent_main.time, "monotonic", lambda: clock)
    a.reconcile_once()  # a second later: the safety-net list
    assert engine.lists == 2

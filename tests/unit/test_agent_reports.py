"""The agent reports a change at once, and re-sends an unchanged report only now and then,
on its long poll (no request of its own)."""
from __future__ import annotations

import agent.main as agent_main
from agent.main import Agent, AgentConfig
from agent.types import Observed


class FakeDriver:
    def probe_address(self, container_id: str, port: int):  # type: ignore[no-untyped-def]
        return None


class FakeClient:
    def __init__(self, agent: Agent, polls: int = 1):
        self.agent, self.polls = agent, polls
        self.calls: list[tuple[float, list | None]] = []

    def sync(self, known, wait, report):  # type: ignore[no-untyped-def]
        self.calls.append((wait, report))
        if wait > 0:
            self.polls -= 1
            if self.polls <= 0:
                self.agent.stop.set()
        return "e:1", None, 1.0


def make() -> tuple[Agent, FakeClient]:
    a = Agent(AgentConfig(server="http://127.0.0.1:9", join_token="j", node_name="n1"), driver=FakeDriver())  # type: ignore[arg-type]
    c = FakeClient(a)
    a.client = c  # type: ignore[assignment]
    return a, c


RUNNING = [Observed("i1", "web", 1, 1, "c1", "running")]


def test_a_change_is_reported_at_once_and_an_unchanged_report_is_not_sent_again(monkeypatch):
    monkeypatch.setattr(agent_main, "REPORT_SPACING", 0.0)
    a, c = make()
    a.report(RUNNING)
    assert len(c.calls) == 1 and c.calls[0][0] == 0
    assert c.calls[0][1][0]["instance_id"] == "i1" and c.calls[0][1][0]["state"] == "running"
    a.report(RUNNING)
    assert len(c.calls) == 1  # unchanged: nothing sent
    a.report([Observed("i1", "web", 1, 1, "c1", "exited", exit_code=1)])
    assert len(c.calls) == 2 and c.calls[1][1][0]["state"] != "running"


def test_the_periodic_re_send_rides_on_the_long_poll(monkeypatch):
    a, c = make()
    a.report(RUNNING)
    sent = c.calls[0][1]
    c.calls.clear()
    a.poll_forever()  # one poll: the report was just sent, so none rides on it
    assert len(c.calls) == 1 and c.calls[0][0] > 0 and c.calls[0][1] is None
    clock = agent_main.time.time() + agent_main.FULL_REPORT_EVERY + 1
    monkeypatch.setattr(agent_main.time, "time", lambda: clock)
    a.stop.clear()
    c.polls = 1
    a.poll_forever()  # due: the long poll carries the last report
    assert len(c.calls) == 2 and c.calls[1][0] > 0 and c.calls[1][1] == sent
    a.stop.clear()
    c.polls = 1
    a.poll_forever()  # and the clock starts again
    assert c.calls[2][1] is None


def test_changes_in_a_burst_are_reported_at_most_every_few_round_trips(monkeypatch):
    clock = [100.0]
    monkeypatch.setattr(agent_main.time, "monotonic", lambda: clock[0])
    a, c = make()
    sync = c.sync

    def slow(known, wait, report):  # type: ignore[no-untyped-def]
        clock[0] += 0.02  # a 20 ms round trip
        return sync(known, wait, report)

    c.sync = slow  # type: ignore[method-assign]
    a.report(RUNNING)
    assert len(c.calls) == 1 and not a._report_waits
    clock[0] += 0.05  # 50 ms later: inside REPORT_SPACING x 20 ms
    a.report([Observed("i1", "web", 1, 1, "c1", "running"), Observed("i2", "web", 1, 2, "c2", "running")])
    assert len(c.calls) == 1 and a._report_waits  # it waits; the reconciler looks again when it may go
    clock[0] = 100.02 + agent_main.REPORT_SPACING * 0.02
    a.report([Observed("i1", "web", 1, 1, "c1", "running"), Observed("i2", "web", 1, 2, "c2", "running")])
    assert len(c.calls) == 2 and len(c.calls[1][1]) == 2
    clock[0] += 10.0  # after a quiet spell a change goes at once
    a.report(RUNNING)
    assert len(c.calls) == 3
    a.report([Observed("i1", "web", 1, 1, "c1", "exited", exit_code=1)], force=True)  # force: at once
    assert len(c.calls) == 4

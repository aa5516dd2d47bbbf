"""The leader's node TTL counts every node of the cluster, not only the agents that sync with
it: with several servers, another server may have told its agents a longer heartbeat interval
(hub.py stretches it past 200 nodes) than the leader's own count gives. A real Reconciler on
SQLite, one pass driven by hand; the heartbeats come from the table, as another server's
flush writes them."""
from __future__ import annotations

import time

import pytest

from orchestrator.db import Database, migrate
from orchestrator.hub import Hub
from orchestrator.models import Event, Node
from orchestrator.reconcile import Reconciler

NODES = 1000  # another server's agents: it hands them 1,000 / 200 = 5 s between syncs


def test_the_ttl_stretches_with_the_cluster_count_not_only_the_local_one():
    hub = Hub()
    assert hub.node_ttl(5.0) == 5.0  # heard nobody: the configured TTL
    assert hub.node_ttl(5.0, NODES) == 15.0  # three intervals of 5 s
    hub.heartbeats.update({f"n{k}": 0.0 for k in range(2000)})
    assert hub.node_ttl(5.0, NODES) == 30.0  # its own agents count when they are more
    assert hub.node_grace(1.0, NODES) == 10.0


@pytest.mark.parametrize("silent, down", [(6.0, 0), (14.0, 0), (16.0, NODES)])
def test_a_leader_that_hears_no_agent_keeps_another_server_s_nodes(tmp_path, silent, down):
    url = f"sqlite:///{tmp_path / 'state.db'}"
    migrate(url)
    db = Database(url)
    now = time.time()

    def seed(s):  # type: ignore[no-untyped-def]
        for k in range(NODES):
            s.add(Node(name=f"n{k:04d}", address="127.0.0.1", status="ready", availability="active", cpus=8.0,
                       memory=16 * 1024**3, labels={}, last_heartbeat=now - silent))

    db.run(seed)
    hub = Hub()
    hub.started_at = now - 60  # leading for a while: no start-of-term grace
    hub.bump = lambda nodes: None  # type: ignore[method-assign]
    r = Reconciler(db, hub, node_ttl=5.0)
    r._pass()
    downs = db.run(lambda s: s.query(Event).filter(Event.kind == "node_down").count())
    statuses = db.run(lambda s: {n.status for n in s.query(Node)})
    assert downs == down
    assert statuses == ({"down"} if down else {"ready"})

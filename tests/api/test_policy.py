"""Host-privilege policy: refused by default (403 naming the field and the --allow flag),
allowed only by an explicit allow-list, and then only for admin tokens."""
from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from orchestrator import policy
from orchestrator.api.app import create_app
from orchestrator.config import Settings
from tests.api.conftest import ADMIN, JOIN
from tests.api.principals import assert_error_shape, bearer, make_token

BASE = {"image": "busybox:1", "replicas": 1}
ASKS = [
    ({"privileged": True}, "privileged", "--allow privileged"),
    ({"network_mode": "host"}, "network_mode", "--allow host-network"),
    ({"pid_mode": "host"}, "pid_mode", "--allow host-pid"),
    ({"cap_add": ["NET_ADMIN"]}, "cap_add.0", "--allow cap:NET_ADMIN"),
    ({"cap_add": ["cap_sys_admin"]}, "cap_add.0", "--allow cap:SYS_ADMIN"),
    ({"volumes": [{"source": "/etc", "target": "/host-etc"}]}, "volumes.0.source", "--allow bind:/etc"),
]
ALLOW = ("privileged,host-network", "host-pid", "cap:NET_ADMIN", "bind:/srv/data")


@pytest.fixture
def allowing(tmp_path):  # type: ignore[no-untyped-def]
    app = create_app(Settings(data_dir=tmp_path, admin_token=ADMIN, join_token=JOIN, allow=ALLOW))
    with TestClient(app, headers=bearer(ADMIN)) as c:
        yield c


@pytest.mark.parametrize("extra,field,hint", ASKS, ids=[a[1] for a in ASKS])
def test_refused_by_default_even_for_admins(client, extra, field, hint):
    r = client.put("/v1/services/p", json={**BASE, **extra})
    err = assert_error_shape(r, 403, "forbidden")
    assert err["reason"] == "policy"
    assert hint in err["message"] and field in [d["field"] for d in err["details"]]
    assert client.get("/v1/services").json() == []
    # nor can a patch or a later update sneak it in
    client.put("/v1/services/q", json=BASE)
    assert_error_shape(client.patch("/v1/services/q", json=extra), 403, "forbidden")
    assert_error_shape(client.put("/v1/services/q", json={**BASE, **extra}), 403, "forbidden")
    assert client.get("/v1/services/q").json()["revision"] == 1


def test_unprivileged_values_need_no_allowance(client):
    r = client.put("/v1/services/p", json={**BASE, "privileged": False, "network_mode": "bridge", "cap_add": []})
    assert r.status_code == 201, r.text
    assert client.put("/v1/services/n", json={**BASE, "network_mode": "none"}).status_code == 201


def test_allow_list_admits_admins_only(allowing):
    spec = {**BASE, "privileged": True, "network_mode": "host", "pid_mode": "host", "cap_add": ["net_admin"],
            "volumes": [{"source": "/srv/data/app", "target": "/data", "read_only": True}]}
    op = make_token(allowing, "operator", "op")
    anon = TestClient(allowing.app)
    err = assert_error_shape(anon.put("/v1/services/p", json=spec, headers=bearer(op)), 403, "forbidden")
    assert "admin" in err["message"] and "'op'" in err["message"]
    assert {d["field"] for d in err["details"]} == {"privileged", "network_mode", "pid_mode", "cap_add.0",
                                                    "volumes.0.source"}
    r = allowing.put("/v1/services/p", json=spec)
    assert r.status_code == 201, r.text
    assert r.json()["spec"]["cap_add"] == ["NET_ADMIN"]
    assert r.json()["spec"]["volumes"] == [{"source": "/srv/data/app", "target": "/data", "read_only": True}]


@pytest.mark.parametrize("extra,field", [
    ({"cap_add": ["SYS_ADMIN"]}, "cap_add.0"),
    ({"volumes": [{"source": "/srv/database", "target": "/x"}]}, "volumes.0.source"),  # a prefix, not a path
    ({"volumes": [{"source": "/srv", "target": "/x"}]}, "volumes.0.source"),
    ({"volumes": [{"source": "/", "target": "/x"}]}, "volumes.0.source"),
])
def test_what_the_list_does_not_name_stays_refused(allowing, extra, field):
    err = assert_error_shape(allowing.put("/v1/services/p", json={**BASE, **extra}), 403, "forbidden")
    assert [d["field"] for d in err["details"]] == [field]


@pytest.mark.parametrize("volume", [
    {"source": "/srv/data/../../etc", "target": "/x"},
    {"source": "relative/path", "target": "/x"},
    {"source": "/srv/data", "target": "relative"},
    {"source": "/srv/data:/etc", "target": "/x"},
    {"source": "/srv/data", "target": "/x", "mode": "rw"},
])
def test_bad_bind_mounts_are_invalid(allowing, volume):
    assert_error_shape(allowing.put("/v1/services/p", json={**BASE, "volumes": [volume]}), 422, "validation_error")


def test_operator_may_scale_but_not_rewrite_a_privileged_service(allowing):
    allowing.put("/v1/services/p", json={**BASE, "privileged": True})
    allowing.patch("/v1/services/p", json={"env": {"V": "2"}})  # admin: revision 2, still privileged
    op = make_token(allowing, "operator", "op")
    anon = TestClient(allowing.app, headers=bearer(op))
    assert anon.post("/v1/services/p/scale", json={"replicas": 3}).status_code == 200
    assert anon.patch("/v1/services/p", json={"replicas": 4}).status_code == 200
    assert anon.put("/v1/services/p", json={**BASE, "privileged": True, "env": {"V": "2"}, "replicas": 5}).status_code == 200
    assert_error_shape(anon.patch("/v1/services/p", json={"env": {"V": "3"}}), 403, "forbidden")
    assert_error_shape(anon.post("/v1/services/p/rollback", json={"revision": 1}), 403, "forbidden")
    # dropping the privilege is a change an operator may make
    assert anon.patch("/v1/services/p", json={"privileged": False}).status_code == 200
    assert_error_shape(anon.post("/v1/services/p/rollback"), 403, "forbidden")  # back to privileged: no
    assert allowing.post("/v1/services/p/rollback").status_code == 200  # an admin may


def test_allow_list_parsing():
    a = policy.parse(["privileged, cap:cap_net_admin", "bind:/srv/data/", "host-network"])
    assert a.privileged and a.host_network and not a.host_pid
    assert a.allows("cap", "NET_ADMIN") and not a.allows("cap", "SYS_ADMIN")
    assert a.allows("bind", "/srv/data") and a.allows("bind", "/srv/data/x") and not a.allows("bind", "/srv/datax")
    assert policy.parse("cap:ALL").allows("cap", "SYS_ADMIN")
    assert policy.parse([]) == policy.Allow()
    for bad in ("root", "bind:relative", "bind:/a/../b", "cap:not a cap", "privileged:yes"):
        with pytest.raises(ValueError):
            policy.parse([bad])
    with pytest.raises(ValueError):
        create_app(Settings(allow=("everything",)))


def test_spec_consistency(allowing):
    vols = [{"source": "/srv/data/a", "target": "/d"}, {"source": "/srv/data/b", "target": "/d"}]
    assert_error_shape(allowing.put("/v1/services/p", json={**BASE, "volumes": vols}), 422, "validation_error")
    body = {**BASE, "network_mode": "none", "ports": [{"container_port": 80}]}
    assert_error_shape(allowing.put("/v1/services/p", json=body), 422, "validation_error")

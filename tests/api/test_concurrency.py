"""Racing writers: optimistic concurrency never loses an update, and a busy SQLite is never a 500."""
from __future__ import annotations

import threading
from collections import Counter

from orchestrator.db import Database
from orchestrator.models import Setting
from tests.api.principals import assert_error_shape


def _race(n_clients: int, per_client: int, attempt) -> Counter:  # type: ignore[no-untyped-def]
    statuses: Counter = Counter()
    errors: list[BaseException] = []
    lock = threading.Lock()
    start = threading.Barrier(n_clients)

    def worker(k: int) -> None:
        try:
            start.wait()
            done = 0
            while done < per_client:
                code = attempt(k, done)
                with lock:
                    statuses[code] += 1
                if code in (200, 201):
                    done += 1
                else:
                    assert code == 409, code
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(n_clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    return statuses


def test_read_modify_write_race_loses_no_update(client):
    """Two clients each add their own labels by GET -> modify -> PATCH with If-Match."""
    client.put("/v1/services/web", json={"image": "busybox:1", "replicas": 0})
    n = 25

    def attempt(k: int, i: int) -> int:
        r = client.get("/v1/services/web")
        labels = dict(r.json()["spec"]["labels"])
        labels[f"c{k}-{i}"] = "x"
        r2 = client.patch("/v1/services/web", json={"labels": labels}, headers={"If-Match": r.headers["ETag"]})
        if r2.status_code == 409:
            err = assert_error_shape(r2, 409, "conflict")
            assert err["current_version"] >= int(r.headers["ETag"].strip('"'))
        return r2.status_code

    statuses = _race(2, n, attempt)
    svc = client.get("/v1/services/web").json()
    assert set(svc["spec"]["labels"]) == {f"c{k}-{i}" for k in range(2) for i in range(n)}
    assert svc["version"] == 1 + 2 * n and svc["revision"] == 1 + 2 * n
    assert statuses[200] == 2 * n
    revs = client.get("/v1/services/web/revisions").json()
    assert len({r["number"] for r in revs}) == len(revs)


def test_counter_race_with_version_in_body(client):
    """Scale by +1 with the version in a PUT body: the final count is exactly the sum of successes."""
    client.put("/v1/services/ctr", json={"image": "busybox:1", "replicas": 0})

    def attempt(k: int, i: int) -> int:
        cur = client.get("/v1/services/ctr").json()
        body = {"image": "busybox:1", "replicas": cur["replicas"] + 1, "version": cur["version"]}
        return client.put("/v1/services/ctr", json=body).status_code

    statuses = _race(4, 10, attempt)
    assert client.get("/v1/services/ctr").json()["replicas"] == 40 == statuses[200]


def test_many_concurrent_writers_never_get_a_500(client):
    """16 writers creating, scaling, patching and deleting at once (with the loop running)."""
    bad: list[tuple[int, str]] = []

    def worker(k: int) -> None:
        name = f"s{k}"
        calls = [
            lambda: client.put(f"/v1/services/{name}", json={"image": "busybox:1", "replicas": 1}),
            lambda: client.post(f"/v1/services/{name}/scale", json={"replicas": 3}),
            lambda: client.patch(f"/v1/services/{name}", json={"env": {"K": str(k)}}),
            lambda: client.put("/v1/services/shared", json={"image": "busybox:1", "replicas": k % 5}),
            lambda: client.patch("/v1/services/shared", json={"labels": {f"w{k}": "1"}}),
            lambda: client.post(f"/v1/services/{name}/rollback"),
            lambda: client.delete(f"/v1/services/{name}"),
        ]
        for _ in range(3):
            for call in calls:
                try:
                    r = call()
                except Exception as exc:  # the test client re-raises what the server did not handle
                    bad.append((500, repr(exc)))
                    continue
                if r.status_code >= 500 or r.status_code not in (200, 201, 202, 404, 409):
                    bad.append((r.status_code, r.text))

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(180)
    assert not bad, bad[:5]
    assert client.get("/readyz").status_code == 200


def test_database_run_under_contention(tmp_path):
    """The database layer itself: 24 threads x 20 read-modify-write transactions on one row."""
    from orchestrator.db import migrate

    url = f"sqlite:///{tmp_path / 'c.db'}"
    migrate(url)
    db = Database(url)
    db.run(lambda s: s.add(Setting(key="n", value="0")))
    from sqlalchemy import select

    def bump(s):  # type: ignore[no-untyped-def]
        row = s.scalars(select(Setting).where(Setting.key == "n").with_for_update()).one()
        row.value = str(int(row.value) + 1)

    errors: list[BaseException] = []

    def worker() -> None:
        try:
            for _ in range(20):
                db.run(bump)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(24)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors[:3]
    assert db.run(lambda s: s.get(Setting, "n").value) == str(24 * 20)
    db.engine.dispose()


def test_a_database_that_stays_locked_is_503_not_500(client, monkeypatch):
    from sqlalchemy.exc import OperationalError

    def locked(fn, attempts=5):  # type: ignore[no-untyped-def]
        raise OperationalError("SELECT 1", {}, Exception("database is locked"))

    monkeypatch.setattr(client.app.state.dy.db, "run", locked)
    r = client.get("/v1/services")
    assert_error_shape(r, 503, "unavailable")
    assert r.headers["Retry-After"] == "1"

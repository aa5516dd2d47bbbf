"""Fixtures for tests against real server/agent processes and the real Docker engine.

No Docker means these tests fail with a clear message instead of skipping: a skipped
integration test in CI would claim coverage it does not give.
"""
from __future__ import annotations

import subprocess

import docker
import pytest

from tests.harness import IMAGE, ROOT, Cluster


@pytest.fixture(scope="session")
def engine() -> docker.DockerClient:
    try:
        client = docker.from_env(timeout=120)
        client.ping()
    except Exception as exc:  # pragma: no cover - environment problem
        pytest.fail(f"no Docker engine answers ({exc}); start dockerd (see README) before running the tests")
    try:
        client.images.get(IMAGE)
    except docker.errors.ImageNotFound:
        subprocess.run([str(ROOT / "scripts" / "build-test-image.sh")], check=True)
    return client


@pytest.fixture
def cluster(engine, tmp_path, request):  # type: ignore[no-untyped-def]
    c = Cluster(tmp_path)
    c.start_server()
    yield c
    c.close()
    if request.node.rep_call.failed if hasattr(request.node, "rep_call") else False:
        for log in sorted(tmp_path.glob("*.log")):
            print(f"===== {log.name}\n{log.read_text()[-6000:]}")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):  # type: ignore[no-untyped-def]
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)

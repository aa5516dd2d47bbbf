"""The driver asks the engine whether an image is present once per IMAGE_PRESENT_SECONDS, not
once per container start; a create that finds the image gone forgets it (fake engine API)."""
from __future__ import annotations

import pytest
from docker.errors import ImageNotFound
from docker.types import HostConfig

from agent import driver as drv
from agent.driver import DockerDriver, DriverError
from agent.types import Assignment


class FakeAPI:
    def __init__(self) -> None:
        self.inspects = 0
        self.pulls = 0
        self.gone = False  # the image was removed behind the agent's back

    def inspect_image(self, image):  # type: ignore[no-untyped-def]
        self.inspects += 1
        if self.gone:
            raise ImageNotFound("no such image")
        return {"Id": image}

    def pull(self, repo, tag=None, stream=False, decode=False):  # type: ignore[no-untyped-def]
        self.pulls += 1
        self.gone = False
        return iter([{"status": "done"}])

    def create_host_config(self, **kw):  # type: ignore[no-untyped-def]
        return HostConfig(version="1.41", **kw)

    def create_container(self, image, **kw):  # type: ignore[no-untyped-def]
        if self.gone:
            raise ImageNotFound("no such image")
        return {"Id": "c0ffee"}

    def start(self, cid):  # type: ignore[no-untyped-def]
        pass


class FakeClient:
    def __init__(self) -> None:
        self.api = FakeAPI()


def _start(d: DockerDriver, slot: int) -> None:
    d.run(Assignment(f"i{slot}", "svc", slot, 1, {"image": "img:1"}), observe=False)


def test_one_inspect_for_many_starts_and_again_after_the_window(monkeypatch):  # type: ignore[no-untyped-def]
    client = FakeClient()
    d = DockerDriver("n1", client=client)
    clock = [1000.0]
    monkeypatch.setattr(drv.time, "monotonic", lambda: clock[0])
    for slot in range(50):
        _start(d, slot)
    assert client.api.inspects == 1 and client.api.pulls == 0
    clock[0] += drv.IMAGE_PRESENT_SECONDS + 1
    _start(d, 50)
    assert client.api.inspects == 2


def test_an_image_removed_meanwhile_fails_the_start_and_is_pulled_on_the_retry():
    client = FakeClient()
    d = DockerDriver("n1", client=client)
    _start(d, 0)
    client.api.gone = True
    with pytest.raises(DriverError, match="not present"):
        _start(d, 1)  # taken as present from memory: the create says otherwise
    _start(d, 1)  # forgotten: asked again, missing, pulled (if-not-present)
    assert client.api.pulls == 1

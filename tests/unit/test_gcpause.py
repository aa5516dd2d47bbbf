"""Pausing the garbage collector for bulk work (orchestrator/gcpause.py)."""
from __future__ import annotations

import gc
import threading

from orchestrator import gcpause


def test_pausers_nest_across_threads_and_the_last_one_out_turns_the_collector_back_on() -> None:
    assert gc.isenabled()
    inside, release = threading.Event(), threading.Event()

    def other() -> None:
        with gcpause.paused():
            inside.set()
            release.wait(5)

    t = threading.Thread(target=other)
    with gcpause.paused():
        t.start()
        assert inside.wait(5)
    assert not gc.isenabled() and gcpause._pausers == 1  # the other thread is still inside
    release.set()
    t.join(5)
    assert gc.isenabled() and gcpause._pausers == 0


def test_a_collector_that_was_off_stays_off() -> None:
    gc.disable()
    try:
        with gcpause.paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    finally:
        gc.enable()

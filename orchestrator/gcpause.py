"""Bulk work (a full reconcile pass, a batch of agent reports) runs with the cyclic garbage
collector paused.

Such work builds tens of thousands of objects that all live until it ends; a collection in
the middle scans them all for nothing (~100 ms at 10,000 instances) while every thread of the
server waits. They go by reference counting when the work ends. Pausers nest, across threads:
the last one out turns the collector back on if the first one in found it on (the first one
out used to, and a pass then ran collected while a report batch had just finished).

A schedule of our own (young collections on a clock, survivors frozen) was measured and not
kept: docs/performance.md, "The garbage collector at 5,000 nodes".
"""
from __future__ import annotations

import gc
import threading
from contextlib import contextmanager
from typing import Iterator

_lock = threading.Lock()
_pausers = 0
_restore = False  # the collector was on when the first pauser came


@contextmanager
def paused() -> Iterator[None]:
    global _pausers, _restore
    with _lock:
        if _pausers == 0:
            _restore = gc.isenabled()
            gc.disable()
        _pausers += 1
    try:
        yield
    finally:
        with _lock:
            _pausers -= 1
            if _pausers == 0 and _restore:
                gc.enable()

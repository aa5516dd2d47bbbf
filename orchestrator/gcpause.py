"""Bulk work (a full reconcile pass, a batch of agent reports) runs with the cyclic garbage
collector paused.

Such work builds tens of thousands of objects that all live until it ends; a collection in
the middle scans them all for nothing (~100 ms at 10,000 instances) while every thread of the
server waits. They go by reference counting when the work ends. Whoever paused it first
turns it back on, so concurrent pausers never leave it off.
"""
from __future__ import annotations

import gc
from contextlib import contextmanager
from typing import Iterator


@contextmanager
def paused() -> Iterator[None]:
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()

"""The loop's log stays readable in a large cluster: APScheduler's warning for every interval
tick that found the previous pass still running goes to debug; other warnings stay."""
from __future__ import annotations

import logging

from orchestrator.reconcile import _quiet_overlap


def record(msg: str, level: int = logging.WARNING) -> logging.LogRecord:
    return logging.LogRecord("apscheduler.scheduler", level, __file__, 1, msg, None, None)


def test_the_skipped_tick_warning_is_demoted_and_other_warnings_kept():
    logging.getLogger("apscheduler.scheduler").setLevel(logging.INFO)
    skipped = record('Execution of job "Reconciler.run_pass" skipped: maximum number of running instances reached (1)')
    assert _quiet_overlap(skipped) is False and skipped.levelno == logging.DEBUG
    other = record("Run time of job was missed by 0:00:03")
    assert _quiet_overlap(other) is True and other.levelno == logging.WARNING
    logging.getLogger("apscheduler.scheduler").setLevel(logging.DEBUG)
    try:
        assert _quiet_overlap(record("... maximum number of running instances reached (1)")) is True  # asked for
    finally:
        logging.getLogger("apscheduler.scheduler").setLevel(logging.NOTSET)

"""The autoscaling rule: from a metric to a replica count. Pure: plain data in, a decision out.

The Kubernetes Horizontal Pod Autoscaler's rule, so its users know what to expect:

- recommendation = ceil(ready x value / target), where `value` is the metric averaged over the
  ready instances (cpu and memory: percent of the request; rps: requests/s per ready instance;
  latency_p95: milliseconds, the worst of the gateways'), and nothing changes while value/target
  is within 1 +- tolerance;
- stabilisation: every recommendation is kept with its time; the count goes up to the lowest
  recommendation of the last `up` seconds and down to the highest of the last `down` seconds,
  so one quiet sample never removes replicas that a busy minute needed (and scale-up is fast:
  `up` defaults to 0);
- the result stays within [min, max]; without fresh figures, or with ready < current (new
  instances still starting), nothing is scaled down.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

UNITS = {"cpu": "%", "memory": "%", "rps": " req/s per instance", "latency_p95": " ms"}


@dataclass(frozen=True)
class Policy:
    min: int
    max: int
    metric: str
    target: float
    up: float = 0.0  # scale_up_stabilization, seconds
    down: float = 300.0  # scale_down_stabilization, seconds
    tolerance: float = 0.1

    @classmethod
    def of(cls, spec: dict) -> "Policy":
        return cls(spec["min"], spec["max"], spec.get("metric", "cpu"), float(spec["target"]),
                   float(spec.get("scale_up_stabilization", 0.0)), float(spec.get("scale_down_stabilization", 300.0)),
                   float(spec.get("tolerance", 0.1)))


@dataclass(frozen=True)
class Decision:
    desired: int
    recommendation: int  # before stabilisation and bounds
    history: tuple[tuple[float, int], ...]  # (time, recommendation), newest last, what the windows need
    reason: str  # for the event, when desired differs from current


def recommend(p: Policy, ready: int, current: int, value: float | None) -> int:
    if value is None or ready <= 0:
        return current
    ratio = value / p.target
    if abs(ratio - 1.0) <= p.tolerance:
        return current
    wanted = math.ceil(ready * ratio - 1e-9)  # 2 x 1.5 is 3, not 4, despite floating point
    if wanted < current and ready < current:
        return current  # instances still starting: their share of the load is not known yet
    return max(wanted, 0)


def decide(p: Policy, current: int, ready: int, value: float | None, history: tuple[tuple[float, int], ...],
           now: float) -> Decision:
    rec = recommend(p, ready, current, value)
    keep = max(p.up, p.down)
    hist = tuple((t, r) for t, r in history if now - t <= keep and t <= now) + ((now, rec),)
    up = min(r for t, r in hist if now - t <= p.up)
    down = max(r for t, r in hist if now - t <= p.down)
    if current < up:
        desired = up
    elif current > down:
        desired = down
    else:
        desired = current
    bounded = min(max(desired, p.min), p.max)
    return Decision(bounded, rec, hist, _reason(p, current, bounded, rec, desired, value))


def _reason(p: Policy, current: int, desired: int, rec: int, stabilised: int, value: float | None) -> str:
    unit = UNITS.get(p.metric, "")
    shown = "no figures" if value is None else f"{value:.0f}{unit} against a target of {p.target:g}{unit}"
    why = f"{p.metric} {shown}: {current} -> {desired}"
    if desired != stabilised:
        why += f" (wanted {stabilised}; bounds {p.min}-{p.max})"
    elif rec != stabilised:
        why += f" (now {rec}; the highest of the last {p.down:g} s is kept)" if rec < stabilised else \
            f" (now {rec}; the lowest of the last {p.up:g} s is taken)"
    return why

"""The control plane's own state: which server leads, under which epoch, how fresh its lease is."""
from __future__ import annotations

import time

from fastapi import APIRouter, Depends

from orchestrator import metrics
from orchestrator.api.deps import State, role, state
from orchestrator.auth import Principal
from orchestrator.coord import lease

router = APIRouter(prefix="/v1", tags=["cluster"])


def leadership(st: State) -> dict:
    """What this server knows of the lease (read from the database when it answers)."""
    me = st.server_id  # type: ignore[attr-defined]
    out: dict = {"server": me, "leading": st.loop.leading, "passes": st.loop.passes,
                 "epoch": None, "holder": None, "lease_age_seconds": None,
                 "lease_expires_in_seconds": None, "lease_ttl_seconds": st.settings.lease_ttl}
    try:
        info = st.db.run(lambda s: lease.read(s, st.db.engine.dialect.name), attempts=1)
    except Exception:
        return out  # the database is away: /readyz says so in its checks
    metrics.LEASE_AGE.set(max(0.0, info.now - info.renewed_at))
    out.update(epoch=info.epoch, holder=info.holder or None,
               lease_age_seconds=round(max(0.0, info.now - info.renewed_at), 3),
               lease_expires_in_seconds=round(info.expires_at - info.now, 3) if info.holder else None)
    return out


@router.get("/cluster")
def cluster_state(st: State = Depends(state), _: Principal = Depends(role("viewer"))) -> dict:
    """The control plane: this server, the leader (holder of the lease), its epoch and lease age."""
    body = leadership(st)
    body["database"] = st.db.engine.dialect.name
    body["shared"] = st.coord.shared  # type: ignore[attr-defined]
    body["time"] = time.time()
    return body

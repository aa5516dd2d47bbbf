"""Leadership: one lease row in the database, an epoch that grows at every takeover, fencing.

Any number of servers share one database; the one holding the lease is the leader and alone
runs the reconcile loop (scheduler, planner, node liveness). The lease row says who holds
it, under which epoch, and until when — on the DATABASE's clock, so servers whose clocks
disagree still agree on expiry.

- acquire: take the row if it expired or was released; the epoch grows by one.
- renew:   push the expiry out, only while holder and epoch are still ours.
- release: on clean shutdown, so another server takes over at once instead of after the TTL.
- fence:   the first statement of every leader-only write transaction. It locks the row
  (SQLite: takes the write lock; PostgreSQL: a row lock that a takeover must wait for) and
  matches only while holder and epoch are ours and the lease has not expired. A leader that
  was paused past its lease (SIGSTOP, a long GC, a partition) therefore commits nothing when
  it wakes: its fence matches no row, the transaction rolls back, and it steps down.
"""
from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.orm import Session

from orchestrator.errors import DockyardError


class NotLeader(DockyardError):
    """A leader-only write was attempted without a valid lease (it changed nothing)."""

    status = 503
    code = "not_leader"


def db_now(dialect: str) -> str:
    """SQL for the database's clock as UNIX seconds (float)."""
    if dialect == "postgresql":
        return "extract(epoch from clock_timestamp())"
    return "((julianday('now') - 2440587.5) * 86400.0)"


@dataclass(frozen=True)
class LeaseInfo:
    holder: str
    epoch: int
    expires_at: float
    acquired_at: float
    renewed_at: float
    now: float  # the database's clock when read

    @property
    def valid(self) -> bool:
        return bool(self.holder) and self.expires_at > self.now


class Lease:
    """SQL for the lease row. `holder` names this server process uniquely (host:pid:random)."""

    def __init__(self, holder: str, ttl: float, dialect: str):
        self.holder, self.ttl = holder, ttl
        self._now = db_now(dialect)

    def acquire(self, s: Session, steal: bool = False) -> int | None:
        """The new epoch if this server took the lease, else None.

        steal: take it even from an unexpired holder. Only for a server that knows no other
        can share its database (SQLite, whose file lock it holds): the holder it finds is its
        own crashed predecessor, and waiting out that lease would only delay the restart."""
        n = self._now
        free = "" if steal else f" AND (holder = '' OR expires_at <= {n})"
        r = s.execute(text(
            f"UPDATE leader_lease SET holder = :h, epoch = epoch + 1, expires_at = {n} + :ttl, "
            f"acquired_at = {n}, renewed_at = {n} WHERE id = 1{free}"),
            {"h": self.holder, "ttl": self.ttl})
        if r.rowcount != 1:
            return None
        return int(s.execute(text("SELECT epoch FROM leader_lease WHERE id = 1")).scalar_one())

    def renew(self, s: Session, epoch: int) -> bool:
        # no expiry condition: any takeover bumps the epoch, so holder + epoch still ours means
        # nobody else has led since (a late renew is safe; a late write is fenced)
        r = s.execute(text(
            f"UPDATE leader_lease SET expires_at = {self._now} + :ttl, renewed_at = {self._now} "
            "WHERE id = 1 AND holder = :h AND epoch = :e"), {"h": self.holder, "e": epoch, "ttl": self.ttl})
        return r.rowcount == 1

    def release(self, s: Session, epoch: int) -> bool:
        r = s.execute(text("UPDATE leader_lease SET holder = '', expires_at = 0 WHERE id = 1 AND holder = :h AND epoch = :e"),
                      {"h": self.holder, "e": epoch})
        return r.rowcount == 1

    def fence(self, s: Session, epoch: int) -> None:
        """Raise NotLeader unless this server still leads under `epoch`; lock the row till commit."""
        r = s.execute(text(
            f"UPDATE leader_lease SET holder = holder WHERE id = 1 AND holder = :h AND epoch = :e "
            f"AND expires_at > {self._now}"), {"h": self.holder, "e": epoch})
        if r.rowcount != 1:
            raise NotLeader(f"this server no longer leads under epoch {epoch}")


def read(s: Session, dialect: str) -> LeaseInfo:
    row = s.execute(text(f"SELECT holder, epoch, expires_at, acquired_at, renewed_at, {db_now(dialect)} "
                         "FROM leader_lease WHERE id = 1")).one()
    return LeaseInfo(row[0], int(row[1]), float(row[2]), float(row[3]), float(row[4]), float(row[5]))


def current_epoch(s: Session) -> int:
    """The newest epoch (0 before any server led): sent with assignments, so agents can
    ignore an answer computed under an older leader than one they already heard from."""
    return int(s.execute(text("SELECT epoch FROM leader_lease WHERE id = 1")).scalar_one())

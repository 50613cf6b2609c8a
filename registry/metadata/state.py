"""The node's own values (its id, epoch, job cursors) and named counters."""

from __future__ import annotations

from collections.abc import Iterable

from sqlmodel import Session, col, select

from registry.metadata.tables import Counter, NodeState


class NodeValues:
    def __init__(self, session: Session) -> None:
        self._session = session

    def get(self, key: str) -> str | None:
        row = self._session.get(NodeState, key)
        return None if row is None else row.value

    def many(self, keys: Iterable[str]) -> dict[str, str]:
        rows = self._session.exec(select(NodeState).where(col(NodeState.key).in_(set(keys))))
        return {r.key: r.value for r in rows.all()}

    def setdefault(self, key: str, default: str) -> str:
        """The value, storing `default` first if there is none."""
        row = self._session.get(NodeState, key)
        if row is None:
            row = NodeState(key=key, value=default)
            self._session.add(row)
        return row.value

    def with_prefix(self, prefix: str) -> dict[str, str]:
        rows = self._session.exec(select(NodeState).where(col(NodeState.key).startswith(prefix)))
        return {r.key: r.value for r in rows.all()}

    def delete(self, key: str) -> None:
        row = self._session.get(NodeState, key)
        if row is not None:
            self._session.delete(row)

    def put(self, key: str, value: str) -> None:
        row = self._session.get(NodeState, key) or NodeState(key=key, value=value)
        row.value = value
        self._session.add(row)

    def bump(self, counter: str, by: int = 1) -> None:
        """Add to a named counter (made at 0 on first use)."""
        row = self._session.get(Counter, counter) or Counter(name=counter, value=0)
        row.value += by
        self._session.add(row)

    def counters(self, prefix: str) -> dict[str, int]:
        """The named counters starting with `prefix` (the change-log serial is not one)."""
        rows = self._session.exec(select(Counter).where(col(Counter.name).startswith(prefix)))
        return {r.name: r.value for r in rows.all()}

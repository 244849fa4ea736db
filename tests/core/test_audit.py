"""Audit log: every change appends a hash-chained entry; tampering is detected and located."""

from __future__ import annotations

import threading

from sqlalchemy import delete, update

from cityplus.core import audit
from cityplus.core.audit import Actor, AuditEntry, AuditHead


def _append(ctx, n: int, who: str = "alice") -> None:  # type: ignore[no-untyped-def]
    for i in range(n):
        with ctx.db.session() as s:
            audit.append(s, Actor(username=who, org_code="fgw"), "thing.update", "thing", i, {"i": i})


def test_chain_verifies_and_links(ctx) -> None:  # type: ignore[no-untyped-def]
    _append(ctx, 5)
    with ctx.db.session() as s:
        result = audit.verify(s)
        assert result.ok, result
        rows, total = audit.query(s, actor="alice")
        assert total == 5
        assert [r.seq for r in rows] == sorted((r.seq for r in rows), reverse=True)
        assert rows[0].prev_hash == rows[1].entry_hash


def test_edit_is_detected_at_that_entry(ctx) -> None:  # type: ignore[no-untyped-def]
    _append(ctx, 4)
    with ctx.db.session() as s:
        target = audit.query(s, actor="alice")[0][2].seq
        s.execute(update(AuditEntry).where(AuditEntry.seq == target).values(actor="mallory"))
    with ctx.db.session() as s:
        result = audit.verify(s)
    assert not result.ok
    assert result.first_broken_seq == target


def test_deleted_middle_entry_is_detected(ctx) -> None:  # type: ignore[no-untyped-def]
    _append(ctx, 4)
    with ctx.db.session() as s:
        target = audit.query(s, actor="alice")[0][1].seq
        s.execute(delete(AuditEntry).where(AuditEntry.seq == target))
    with ctx.db.session() as s:
        result = audit.verify(s)
    assert not result.ok and result.first_broken_seq == target


def test_deleted_newest_entry_is_detected_via_head(ctx) -> None:  # type: ignore[no-untyped-def]
    _append(ctx, 3)
    with ctx.db.session() as s:
        head = s.get(AuditHead, 1)
        last = head.seq
        s.execute(delete(AuditEntry).where(AuditEntry.seq == last))
    with ctx.db.session() as s:
        result = audit.verify(s)
    assert not result.ok and result.first_broken_seq == last


def test_rolled_back_change_leaves_no_entry(ctx) -> None:  # type: ignore[no-untyped-def]
    with ctx.db.session() as s:
        before = audit.query(s)[1]
    try:
        with ctx.db.session() as s:
            audit.append(s, Actor(username="bob"), "x.y", "x", 1, None)
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    with ctx.db.session() as s:
        assert audit.query(s)[1] == before
        assert audit.verify(s).ok


def test_concurrent_writers_keep_one_chain(ctx) -> None:  # type: ignore[no-untyped-def]
    errors: list[BaseException] = []

    def worker(name: str) -> None:
        try:
            _append(ctx, 10, who=name)
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    with ctx.db.session() as s:
        result = audit.verify(s)
        assert result.ok, result
        assert audit.query(s, action="thing.update")[1] == 40

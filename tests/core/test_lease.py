"""Database leases: one holder at a time across processes; expiry and release hand the lease over."""

from __future__ import annotations

import time

from cityplus.core import lease


def test_one_holder_until_it_expires_or_is_released(ctx) -> None:  # type: ignore[no-untyped-def]
    a, b = lease.holder_id(), lease.holder_id()
    assert a != b
    with ctx.db.session() as s:
        assert lease.acquire(s, "job", a, ttl=60)
    with ctx.db.session() as s:
        assert not lease.acquire(s, "job", b, ttl=60)
        assert lease.acquire(s, "job", a, ttl=60)  # renewal
        assert lease.acquire(s, "other-job", b, ttl=60)  # leases are per name
    with ctx.db.session() as s:
        lease.release(s, "job", a)
    with ctx.db.session() as s:
        assert lease.acquire(s, "job", b, ttl=0.2)
    time.sleep(0.3)
    with ctx.db.session() as s:
        assert lease.acquire(s, "job", a, ttl=60)  # b's lease expired
        assert not lease.acquire(s, "job", b, ttl=60)

"""Fixtures of the open-data tests: publisher tokens of two departments."""

from __future__ import annotations

import pytest


@pytest.fixture
def hbj(make_user, token_for):  # type: ignore[no-untyped-def]
    """Headers of a 市环保局 staff member (publisher of environmental data)."""
    return token_for(make_user("department_staff", org="hbj"))


@pytest.fixture
def jiaow(make_user, token_for):  # type: ignore[no-untyped-def]
    """Headers of a 市交委 staff member (another department)."""
    return token_for(make_user("department_staff", org="jiaow"))


@pytest.fixture
async def browser(app):  # type: ignore[no-untyped-def]
    """A client that behaves like a browser: asks for HTML, keeps cookies, does not follow redirects."""
    import httpx

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver",
                                 headers={"Accept": "text/html,application/xhtml+xml"}) as c:
        yield c

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

"""Fixtures of the supervision tests: the plan office, a lead unit, a co-unit, an unrelated unit, a citizen."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
import pytest


@dataclass
class Party:
    """A test user and the headers of their API token."""

    username: str
    org: str | None
    headers: dict[str, str]


@pytest.fixture
def parties(make_user, token_for) -> dict[str, Party]:  # type: ignore[no-untyped-def]
    """office: 市发改委 staff; lead: 市经信委; co: 市环保局; other: 市科技局; citizen."""
    out = {}
    for key, role, org in (("office", "department_staff", "fgw"), ("lead", "department_staff", "jxw"),
                           ("co", "department_staff", "hbj"), ("other", "department_staff", "kjj"),
                           ("citizen", "citizen", None)):
        u = make_user(role, org=org)
        out[key] = Party(u.username, org, token_for(u))
    return out


def item_body(**over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"task": 21, "title": "市级政府数据开放平台上线",
                            "deliverable": "平台上线，开放 100 个数据集",
                            "lead_org": "jxw", "co_orgs": ["hbj"], "start_date": "2016-01-04",
                            "due_date": "2016-10-08", "public": True,
                            "kpis": [{"name": "开放数据集", "unit": "个", "baseline": 0, "target": 100}]}
    body.update(over)
    return body


async def create(client: httpx.AsyncClient, office: Party, **over: Any) -> dict[str, Any]:
    r = await client.post("/api/v1/plan/items", json=item_body(**over), headers=office.headers)
    assert r.status_code == 201, r.text
    return dict(r.json())

"""Builders of open-data test data (through the CKAN API, the module's public interface)."""

from __future__ import annotations

from typing import Any

import httpx

CKAN = "/api/3/action/"


def package(name: str = "air-quality", org: str = "hbj", **over: Any) -> dict[str, Any]:
    """A complete CKAN package dict for `package_create`."""
    body: dict[str, Any] = {
        "name": name, "title": "成都市空气质量实时监测数据", "title_en": "Chengdu real-time air quality",
        "notes": "全市空气质量自动监测站逐小时发布的六项污染物浓度和空气质量指数（AQI），覆盖中心城区和郊区新城。",
        "owner_org": org, "tags": [{"name": "空气质量"}, {"name": "AQI"}], "groups": [{"name": "area-11"},
                                                                                 {"name": "ENVI"}],
        "license_id": "CC-BY-4.0", "frequency": "DAILY", "spatial": "成都市", "temporal_start": "2016-01-01",
        "maintainer": "市环境监测中心", "maintainer_email": "data@hbj.example.cn", "opening": "open",
        "sharing": "share", "grade": 1,
    }
    body.update(over)
    return body


async def action(client: httpx.AsyncClient, name: str, headers: dict[str, str] | None = None, /,
                 **params: Any) -> httpx.Response:
    return await client.post(CKAN + name, json=params, headers=headers or {})


async def ok(client: httpx.AsyncClient, name: str, headers: dict[str, str] | None = None, /,
             **params: Any) -> Any:
    r = await action(client, name, headers, **params)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["success"] is True
    return body["result"]

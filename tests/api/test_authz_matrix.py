"""Authorisation matrix: every route × every role (and anonymous) gets exactly what it declares."""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi.routing import APIRoute

from cityplus.api.deps import route_access
from cityplus.api.routes import route_table
from cityplus.core.modules import ROLES

PARAM_VALUES = {"code": "fgw", "number": "1", "n": "1", "user_id": "1", "token_id": "999999",
                "district": "武侯区", "station_id": "urn:ngsi-ld:AirQualityObserved:chengdu-sanwayao",
                # plan supervision and the inbox: unknown ids, so allowed callers get 404/422, never 401/403
                "item_id": "999999", "extension_id": "999999", "report_id": "999999", "attachment_id": "999999",
                "message_id": "999999", "decision": "approve",
                "fmt": "ttl"}


def _fill(path: str) -> str:
    return re.sub(r"{(\w+)(:\w+)?}", lambda m: PARAM_VALUES.get(m.group(1), "1"), path)


def _routes(app) -> list[tuple[APIRoute, str, str]]:  # type: ignore[no-untyped-def]
    return [(e.route, _fill(e.path), method) for e in route_table(app) for method in sorted(e.methods - {"HEAD"})]


def test_every_route_declares_access(app) -> None:  # type: ignore[no-untyped-def]
    routes = _routes(app)
    assert len(routes) > 20
    undeclared = [p for r, p, _ in routes if route_access(r) is None]
    assert undeclared == []


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_matrix(app, client, make_user, token_for, ctx) -> None:  # type: ignore[no-untyped-def]
    all_scopes = ctx.registry.all_scopes()
    holders: dict[str, set[str]] = {s.name: set(s.roles) for s in all_scopes}
    tokens = {role: token_for(make_user(role, org="fgw" if "department" in role else None)) for role in ROLES}
    failures: list[str] = []
    checked = 0
    for route, path, method in _routes(app):
        access = route_access(route)
        is_page = not route.include_in_schema
        kwargs: dict[str, Any] = {}
        if method in ("POST", "PUT", "PATCH"):
            kwargs["json"] = {}
        # anonymous
        r = await client.request(method, path, **kwargs)
        checked += 1
        if access == "public":
            if r.status_code in (401, 403) and not _is_csrf(r):
                failures.append(f"anonymous {method} {path}: public route answered {r.status_code}")
        else:
            ok = r.status_code == 401 or (is_page and r.status_code in (303, 307) and "/login" in
                                          r.headers.get("location", ""))
            if not ok:
                failures.append(f"anonymous {method} {path}: expected 401, got {r.status_code}")
        for role in ROLES:
            r = await client.request(method, path, headers=tokens[role], **kwargs)
            checked += 1
            if access == "public":
                allowed = True
            else:
                scope = access.split(":", 1)[1]  # type: ignore[union-attr]
                allowed = role in holders[scope]
            if allowed and (r.status_code == 401 or _is_scope_denial(r)):
                failures.append(f"{role} {method} {path}: should be allowed, got {r.status_code}")
            if not allowed and not (r.status_code == 403 and _is_scope_denial(r)):
                failures.append(f"{role} {method} {path}: should be 403 for missing scope, got {r.status_code}")
            if r.status_code >= 500:
                failures.append(f"{role} {method} {path}: server error {r.status_code}")
    assert not failures, "\n".join(failures)
    assert checked > 100


def _is_scope_denial(r) -> bool:  # type: ignore[no-untyped-def]
    return r.status_code == 403 and "needs scope" in r.text


def _is_csrf(r) -> bool:  # type: ignore[no-untyped-def]
    return "CSRF" in r.text


# The CKAN Action API is one public route per path; each action authorises itself (opendata service rules).
CKAN_WRITES = ["package_create", "package_update", "package_patch", "package_delete", "resource_create",
               "resource_update", "resource_patch", "resource_delete", "datastore_create", "datastore_upsert",
               "datastore_delete"]
CKAN_READS = ["status_show", "package_list", "package_search", "package_show", "resource_show", "organization_list",
              "organization_show", "group_list", "group_show", "tag_list", "datastore_search"]


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_ckan_action_matrix(app, client, make_user, token_for) -> None:  # type: ignore[no-untyped-def]
    publisher = token_for(make_user("department_staff", org="hbj"))
    r = await client.post("/api/3/action/package_create", headers=publisher, json={
        "name": "matrix", "title": "矩阵", "owner_org": "hbj", "opening": "open", "sharing": "share"})
    assert r.status_code == 200, r.text
    pkg = r.json()["result"]
    r = await client.post("/api/3/action/datastore_create", headers=publisher, json={
        "resource": {"package_id": "matrix", "name": "t"}, "fields": [{"id": "a", "type": "int"}]})
    rid = r.json()["result"]["resource_id"]
    params = {"id": pkg["id"], "package_id": pkg["id"], "resource_id": rid, "records": [{"a": 1}], "owner_org": "hbj"}
    callers = {"anonymous": {}} | {role: token_for(make_user(role, org="fgw" if "department" in role else None))
                                   for role in ROLES}
    failures = []
    for action in CKAN_WRITES:
        for who, headers in callers.items():
            body = {**params, "id": rid} if action.startswith("resource_") else params
            r = await client.post(f"/api/3/action/{action}", headers=headers, json=body)
            if r.status_code != 403 or r.json()["error"]["__type"] != "Authorization Error":
                failures.append(f"{who} {action}: expected 403 Authorization Error, got {r.status_code}")
    for action in CKAN_READS:
        for who, headers in callers.items():
            body = {**params, "id": rid} if action.startswith("resource_") else params
            r = await client.post(f"/api/3/action/{action}", headers=headers, json=body)
            if r.status_code in (401, 403) or r.status_code >= 500:
                failures.append(f"{who} {action}: public read answered {r.status_code}: {r.text[:200]}")
    assert not failures, "\n".join(failures)

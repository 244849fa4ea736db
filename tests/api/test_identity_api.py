"""Identity and access through the HTTP API: me, tokens, users, organisations, problems."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select, update

from cityplus.core import audit
from cityplus.core.db import utcnow
from cityplus.core.identity.models import ApiToken


async def test_me_requires_authentication(client) -> None:  # type: ignore[no-untyped-def]
    r = await client.get("/api/v1/me")
    assert r.status_code == 401
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    assert body["status"] == 401 and "account" in body["detail"]
    assert "WWW-Authenticate" in r.headers


async def test_me_with_token_shows_scopes(client, make_user, token_for) -> None:  # type: ignore[no-untyped-def]
    u = make_user("department_staff", org="hbj")
    r = await client.get("/api/v1/me", headers=token_for(u))
    assert r.status_code == 200
    me = r.json()
    assert me["username"] == u.username and me["org"] == "hbj" and me["auth"] == "token"
    assert "account" in me["scopes"] and "users.manage" not in me["scopes"]


async def test_token_lifecycle_shown_once_and_revocable(client, make_user, token_for, ctx) -> None:  # type: ignore[no-untyped-def]
    u = make_user("developer")
    headers = token_for(u)
    r = await client.post("/api/v1/me/tokens", json={"name": "my app", "scopes": ["account"], "days": 30},
                          headers=headers)
    assert r.status_code == 201, r.text
    issued = r.json()
    secret = issued["token"]
    assert secret.startswith("cp_") and issued["prefix"] == secret[:11]
    listed = (await client.get("/api/v1/me/tokens", headers=headers)).json()
    assert all("token" not in t for t in listed)
    assert any(t["id"] == issued["id"] for t in listed)
    with ctx.db.session() as s:
        stored = s.get(ApiToken, issued["id"])
        assert secret not in (stored.token_hash, stored.prefix)  # only the digest is stored
    new_headers = {"Authorization": f"Bearer {secret}"}
    assert (await client.get("/api/v1/me", headers=new_headers)).status_code == 200
    assert (await client.delete(f"/api/v1/me/tokens/{issued['id']}", headers=headers)).status_code == 204
    r = await client.get("/api/v1/me", headers=new_headers)
    assert r.status_code == 401 and "revoked" in r.json()["detail"]


async def test_expired_token_is_refused(client, make_user, token_for, ctx) -> None:  # type: ignore[no-untyped-def]
    u = make_user("citizen")
    headers = token_for(u)
    with ctx.db.session() as s:
        s.execute(update(ApiToken).values(expires_at=utcnow() - timedelta(seconds=1)))
    assert (await client.get("/api/v1/me", headers=headers)).status_code == 401


async def test_token_cannot_exceed_role_or_own_scopes(client, make_user, token_for) -> None:  # type: ignore[no-untyped-def]
    u = make_user("citizen")
    r = await client.post("/api/v1/me/tokens", json={"name": "x", "scopes": ["users.manage"]}, headers=token_for(u))
    assert r.status_code in (403, 422)
    assert "users.manage" in r.text
    admin = make_user("platform_admin")
    narrow = token_for(admin, scopes=["account"])
    r = await client.post("/api/v1/me/tokens", json={"name": "x", "scopes": ["audit.read"]}, headers=narrow)
    assert r.status_code == 403 and "audit.read" in r.text
    r = await client.get("/api/v1/audit", headers=narrow)
    assert r.status_code == 403 and "audit.read" in r.json()["detail"]


async def test_someone_elses_token_cannot_be_revoked(client, make_user, token_for, ctx) -> None:  # type: ignore[no-untyped-def]
    a, b = make_user("citizen"), make_user("citizen")
    token_for(a)
    with ctx.db.session() as s:
        a_token = s.scalar(select(ApiToken.id).where(ApiToken.user_id == a.user_id))
    r = await client.delete(f"/api/v1/me/tokens/{a_token}", headers=token_for(b))
    assert r.status_code == 404


async def test_malformed_bearer_header(client) -> None:  # type: ignore[no-untyped-def]
    r = await client.get("/api/v1/me", headers={"Authorization": "Basic abc"})
    assert r.status_code == 401 and "Bearer" in r.json()["detail"]
    r = await client.get("/api/v1/me", headers={"Authorization": "Bearer cp_nonsense"})
    assert r.status_code == 401


async def test_admin_creates_and_updates_users_with_audit(client, make_user, token_for, ctx) -> None:  # type: ignore[no-untyped-def]
    admin = make_user("platform_admin")
    h = token_for(admin)
    r = await client.post("/api/v1/users", headers=h, json={
        "username": "li.si", "password": "long-enough-1", "role": "department_staff", "org": "jxw",
        "display_name": "李四", "email": "li.si@example.cn"})
    assert r.status_code == 201, r.text
    uid = r.json()["id"]
    assert r.json()["org"] == "jxw"
    r = await client.post("/api/v1/users", headers=h, json={
        "username": "LI.SI", "password": "long-enough-1", "role": "citizen"})
    assert r.status_code == 409
    r = await client.patch(f"/api/v1/users/{uid}", headers=h, json={"role": "department_admin"})
    assert r.status_code == 200 and r.json()["role"] == "department_admin"
    r = await client.patch(f"/api/v1/users/{uid}", headers=h, json={"is_active": False})
    assert r.json()["is_active"] is False
    with ctx.db.session() as s:
        rows, total = audit.query(s, object_type="user", object_id=str(uid))
        assert [e.action for e in rows] == ["user.update", "user.update", "user.create"]
        assert rows[-1].actor == admin.username


async def test_user_validation_names_fields(client, make_user, token_for) -> None:  # type: ignore[no-untyped-def]
    h = token_for(make_user("platform_admin"))
    r = await client.post("/api/v1/users", headers=h, json={
        "username": "x", "password": "short", "role": "mayor", "unknown": 1})
    assert r.status_code == 422
    fields = {e["field"] for e in r.json()["errors"]}
    assert {"body.username", "body.password", "body.role", "body.unknown"} <= fields
    r = await client.post("/api/v1/users", headers=h, json={
        "username": "staff.noorg", "password": "long-enough-1", "role": "department_staff"})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "org"
    r = await client.post("/api/v1/users", headers=h, json={
        "username": "staff.badorg", "password": "long-enough-1", "role": "department_staff", "org": "nope"})
    assert r.status_code == 404 and "nope" in r.json()["detail"]


async def test_malformed_json_is_a_400_problem(client, make_user, token_for) -> None:  # type: ignore[no-untyped-def]
    h = {**token_for(make_user("platform_admin")), "content-type": "application/json"}
    r = await client.post("/api/v1/users", headers=h, content=b'{"username": ')
    assert r.status_code == 400
    assert r.json()["title"] == "Malformed JSON"


async def test_department_admin_sees_only_own_org(client, make_user, token_for) -> None:  # type: ignore[no-untyped-def]
    mine = make_user("department_staff", org="hbj")
    other = make_user("department_staff", org="jxw")
    dadmin = make_user("department_admin", org="hbj")
    h = token_for(dadmin)
    listed = (await client.get("/api/v1/users", headers=h, params={"org": "jxw"})).json()
    assert {u["org"] for u in listed["items"]} == {"hbj"}
    assert mine.username in {u["username"] for u in listed["items"]}
    assert (await client.get(f"/api/v1/users/{other.user_id}", headers=h)).status_code == 403
    assert (await client.get(f"/api/v1/users/{mine.user_id}", headers=h)).status_code == 200
    r = await client.post("/api/v1/users", headers=h, json={
        "username": "nope.user", "password": "long-enough-1", "role": "citizen"})
    assert r.status_code == 403


async def test_orgs_are_public_and_complete(client) -> None:  # type: ignore[no-untyped-def]
    orgs = (await client.get("/api/v1/orgs")).json()
    by_code = {o["code"]: o for o in orgs}
    assert by_code["fgw"]["name"]["zh"] == "市发改委"
    assert by_code["gaj-jgj"]["parent"] == "gaj"
    assert sum(1 for o in orgs if o["kind"] == "district") == 20
    r = await client.get("/api/v1/orgs", params={"kind": "district"})
    assert len(r.json()) == 20
    assert (await client.get("/api/v1/orgs/nope")).status_code == 404


async def test_scopes_and_modules_listed(client) -> None:  # type: ignore[no-untyped-def]
    scopes = {s["name"] for s in (await client.get("/api/v1/scopes")).json()}
    assert {"account", "users.manage", "audit.read", "plan.read"} <= scopes
    modules = (await client.get("/api/v1/modules")).json()
    assert any(m["name"] == "plan" and 42 in m["plan_tasks"] for m in modules)


async def test_audit_api_filters_and_verifies(client, make_user, token_for) -> None:  # type: ignore[no-untyped-def]
    admin = make_user("platform_admin")
    h = token_for(admin)
    make_user("citizen")
    r = await client.get("/api/v1/audit", headers=h, params={"action": "user.create", "limit": 1})
    page = r.json()
    assert r.status_code == 200 and page["total"] >= 2 and len(page["items"]) == 1
    nxt = page["next_before"]
    r2 = (await client.get("/api/v1/audit", headers=h, params={"action": "user.create", "before": nxt})).json()
    assert all(e["seq"] < nxt for e in r2["items"])
    v = (await client.get("/api/v1/audit/verify", headers=h)).json()
    assert v["ok"] is True and v["checked"] > 0
    r = await client.get("/api/v1/audit", headers=h, params={"since": "yesterday"})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "query.since"

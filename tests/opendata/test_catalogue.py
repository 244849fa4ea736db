"""Catalogue through the CKAN Action API: create, publish, versions, department isolation, audit, errors."""

from __future__ import annotations

from sqlalchemy import select

from cityplus.core.audit import AuditEntry
from tests.opendata.factories import CKAN, action, ok, package


async def test_create_is_public_by_default_and_show_by_name_or_id(client, hbj) -> None:  # type: ignore[no-untyped-def]
    created = await ok(client, "package_create", hbj, **package())
    assert created["private"] is False and created["version"] == "1"
    assert created["organization"]["name"] == "hbj"
    assert {g["name"] for g in created["groups"]} == {"area-11", "ENVI"}
    shown = await ok(client, "package_show", id="air-quality")
    assert shown["id"] == created["id"] and shown["title"] == "成都市空气质量实时监测数据"
    r = await client.get(CKAN + "package_show", params={"id": created["id"]})
    assert r.status_code == 200 and r.json()["result"]["name"] == "air-quality"
    assert 0 < shown["quality_score"] <= 100
    assert shown["quality_checks"]["licence"] is True and shown["quality_checks"]["documentation"] is False


async def test_drafts_and_closed_datasets_stay_with_their_department(client, hbj, jiaow, make_user,
                                                                     token_for) -> None:  # type: ignore[no-untyped-def]
    await ok(client, "package_create", hbj, **package("draft-one", private=True))
    await ok(client, "package_create", hbj, **package("closed-shared", opening="closed", sharing="share"))
    await ok(client, "package_create", hbj, **package("closed-unshared", opening="closed", sharing="none"))
    citizen = token_for(make_user("citizen"))
    admin = token_for(make_user("platform_admin"))
    for name, who, visible in [
        ("draft-one", None, False), ("draft-one", citizen, False), ("draft-one", jiaow, False),
        ("draft-one", hbj, True), ("draft-one", admin, True),
        ("closed-shared", None, False), ("closed-shared", citizen, False), ("closed-shared", jiaow, True),
        ("closed-unshared", jiaow, False), ("closed-unshared", hbj, True),
    ]:
        r = await action(client, "package_show", who, id=name)
        assert (r.status_code == 200) is visible, (name, who, r.text)
        if not visible:
            assert r.status_code == 404 and r.json()["error"]["__type"] == "Not Found Error"
    assert await ok(client, "package_list") == []
    assert set(await ok(client, "package_list", jiaow)) == {"closed-shared"}
    assert set(await ok(client, "package_list", hbj)) == {"draft-one", "closed-shared", "closed-unshared"}
    found = await ok(client, "package_search", q="空气质量")
    assert found["count"] == 0  # nothing public
    found = await ok(client, "package_search", hbj, q="空气质量", include_private=True)
    assert found["count"] == 3


async def test_only_the_publisher_department_changes_a_dataset(client, hbj, jiaow, make_user,
                                                               token_for) -> None:  # type: ignore[no-untyped-def]
    await ok(client, "package_create", hbj, **package())
    r = await action(client, "package_patch", jiaow, id="air-quality", title="改掉")
    assert r.status_code == 403 and r.json()["error"]["__type"] == "Authorization Error"
    r = await action(client, "package_create", jiaow, **package("mine", org="hbj"))
    assert r.status_code == 403
    r = await action(client, "package_create", None, **package("anon"))
    assert r.status_code == 403 and r.json()["success"] is False
    dev = token_for(make_user("developer"))
    r = await action(client, "package_delete", dev, id="air-quality")
    assert r.status_code == 403
    r = await client.get(CKAN + "package_create", params={"name": "x"}, headers=hbj)
    assert r.status_code == 400 and "POST" in r.json()["error"]["message"]
    assert (await ok(client, "package_show", id="air-quality"))["title"] == "成都市空气质量实时监测数据"


async def test_updates_make_versions_with_change_notes_and_audit(client, hbj, ctx) -> None:  # type: ignore[no-untyped-def]
    created = await ok(client, "package_create", hbj, **package(private=True))
    assert created["version"] == "0" and created["private"] is True
    published = await ok(client, "package_patch", hbj, id="air-quality", private=False, change_note="首次发布")
    assert published["version"] == "1"
    patched = await ok(client, "package_patch", hbj, id="air-quality", title="成都市空气质量小时数据",
                       change_note="标题更准确")
    assert patched["version"] == "2" and patched["notes"].startswith("全市")
    updated = await ok(client, "package_update", hbj, **package(title="成都市空气质量日报", notes=""))
    assert updated["version"] == "3" and updated["notes"] == ""
    same = await ok(client, "package_patch", hbj, id="air-quality", title="成都市空气质量日报")
    assert same["version"] == "3"  # nothing changed, no version
    from cityplus.modules.opendata import service
    from cityplus.modules.opendata.service import ANONYMOUS

    with ctx.db.session() as s:
        ds = service.get_dataset(s, ANONYMOUS, "air-quality")
        vs = service.versions(s, ds)
        assert [v.version for v in vs] == [3, 2, 1]
        assert vs[1].note == "标题更准确" and vs[1].changed == ["title_zh"]
        assert vs[2].note == "首次发布"
        actions = [e.action for e in s.scalars(select(AuditEntry).where(AuditEntry.object_id == ds.id)
                                               .order_by(AuditEntry.seq))]
    assert actions == ["opendata.dataset_create", "opendata.dataset_publish", "opendata.dataset_update",
                       "opendata.dataset_update"]


async def test_validation_errors_name_the_fields(client, hbj) -> None:  # type: ignore[no-untyped-def]
    r = await action(client, "package_create", hbj, **package("Bad Name!", license_id="nope", groups=[{"name": "x"}]))
    assert r.status_code == 409
    err = r.json()["error"]
    assert err["__type"] == "Validation Error"
    assert {"name", "license_id", "groups"} <= set(err)
    r = await action(client, "package_create", hbj, name="only-name", owner_org="hbj")
    assert r.status_code == 409 and {"title", "opening", "sharing"} <= set(r.json()["error"])
    await ok(client, "package_create", hbj, **package())
    r = await action(client, "package_create", hbj, **package())
    assert r.status_code == 409 and "name" in r.json()["error"]
    r = await action(client, "package_patch", hbj, id="air-quality", temporal_start="2020-01-01",
                     temporal_end="2019-01-01")
    assert r.status_code == 409
    r = await client.post(CKAN + "package_create", content=b"{not json", headers={**hbj,
                                                                                   "content-type": "application/json"})
    assert r.status_code == 400 and r.json()["success"] is False
    r = await client.post(CKAN + "no_such_action", json={})
    assert r.status_code == 400 and r.json()["error"]["message"].startswith("Action name not known")
    r = await action(client, "package_search", q="x", rows="many")
    assert r.status_code == 409
    r = await action(client, "package_search", fq="name:x; DROP TABLE x")
    assert r.status_code == 400 and r.json()["error"]["__type"] == "Search Query Error"


async def test_bare_and_bearer_tokens_and_bad_tokens(client, hbj) -> None:  # type: ignore[no-untyped-def]
    bare = {"Authorization": hbj["Authorization"].removeprefix("Bearer ")}
    await ok(client, "package_create", bare, **package())
    r = await action(client, "package_show", {"Authorization": "cp_not-a-token"}, id="air-quality")
    assert r.status_code == 403 and r.json()["error"]["__type"] == "Authorization Error"
    r = await client.get("/api/action/package_show", params={"id": "air-quality"})
    assert r.status_code == 200 and r.json()["success"] is True


async def test_organizations_groups_tags_status(client, hbj) -> None:  # type: ignore[no-untyped-def]
    await ok(client, "package_create", hbj, **package())
    assert "hbj" in await ok(client, "organization_list")
    orgs = await ok(client, "organization_list", all_fields=True)
    assert next(o for o in orgs if o["name"] == "hbj")["package_count"] == 1
    org = await ok(client, "organization_show", id="hbj", include_datasets=True)
    assert [p["name"] for p in org["packages"]] == ["air-quality"]
    r = await action(client, "organization_show", id="nowhere")
    assert r.status_code == 404
    groups = await ok(client, "group_list")
    assert "area-1" in groups and "area-12" in groups and "TRAN" in groups
    assert (await ok(client, "group_show", id="area-11"))["package_count"] == 1
    assert set(await ok(client, "tag_list")) == {"空气质量", "AQI"}
    status = await ok(client, "status_show")
    assert status["ckan_version"].startswith("2.") and "datastore" in status["extensions"]


async def test_delete_hides_from_everyone_but_the_publisher(client, hbj) -> None:  # type: ignore[no-untyped-def]
    await ok(client, "package_create", hbj, **package())
    assert await ok(client, "package_delete", hbj, id="air-quality") is None
    r = await action(client, "package_show", id="air-quality")
    assert r.status_code == 404
    shown = await ok(client, "package_show", hbj, id="air-quality")
    assert shown["state"] == "deleted"
    assert (await ok(client, "package_search", q="空气"))["count"] == 0

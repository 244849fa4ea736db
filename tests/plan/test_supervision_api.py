"""Supervision through the API: lifecycle, who may do what, versions, extensions, attachments, validation."""

from __future__ import annotations

import pytest

from tests.plan.conftest import create, item_body

API = "/api/v1/plan"


async def test_item_walks_from_assignment_to_closing(client, parties) -> None:  # type: ignore[no-untyped-def]
    office, lead, co = parties["office"], parties["lead"], parties["co"]
    item = await create(client, office)
    assert item["code"] == "21.1" and item["status"] == "assigned" and item["version"] == 1
    assert item["co_orgs"] == ["hbj"] and item["kpis"][0]["target"] == 100
    iid, kpi = item["id"], item["kpis"][0]["id"]

    r = await client.post(f"{API}/items/{iid}/acknowledge", json={"version": 1}, headers=lead.headers)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "acknowledged" and r.json()["version"] == 2

    r = await client.post(f"{API}/items/{iid}/reports", headers=co.headers,
                          json={"text": "环保数据已梳理", "kpi_values": [{"kpi": kpi, "value": 30}]})
    assert r.status_code == 201, r.text
    r = await client.get(f"{API}/items/{iid}", headers=lead.headers)
    assert r.json()["status"] == "in_progress" and r.json()["kpis"][0]["current"] == 30
    assert r.json()["kpis"][0]["progress"] == pytest.approx(0.3)
    version = r.json()["version"]

    # a co-unit cannot report completion, nor close
    r = await client.post(f"{API}/items/{iid}/completion", headers=co.headers,
                          json={"version": version, "text": "done", "kpi_values": []})
    assert r.status_code == 403 and "lead unit" in r.json()["detail"]
    r = await client.post(f"{API}/items/{iid}/close", headers=co.headers, json={"version": version})
    assert r.status_code == 403

    r = await client.post(f"{API}/items/{iid}/completion", headers=lead.headers,
                          json={"version": version, "text": "平台已上线", "kpi_values": [{"kpi": kpi, "value": 120}],
                                "public": True})
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "completion_reported"
    version = r.json()["version"]

    # the plan office returns it with a reason, the unit reports again, the office closes it
    r = await client.post(f"{API}/items/{iid}/return", headers=office.headers,
                          json={"version": version, "reason": "缺少上线验收材料"})
    assert r.status_code == 200 and r.json()["status"] == "returned"
    r = await client.post(f"{API}/items/{iid}/completion", headers=lead.headers,
                          json={"version": r.json()["version"], "text": "补充验收材料", "kpi_values": []})
    assert r.status_code == 200
    r = await client.post(f"{API}/items/{iid}/close", headers=lead.headers, json={"version": r.json()["version"]})
    assert r.status_code == 403 and "plan office" in r.json()["detail"]
    version = (await client.get(f"{API}/items/{iid}", headers=office.headers)).json()["version"]
    r = await client.post(f"{API}/items/{iid}/close", headers=office.headers, json={"version": version, "note": "销号"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "closed" and body["light"] == "done"
    assert [e["action"] for e in body["timeline"]] == [
        "assigned", "acknowledged", "started", "reported", "completion_reported", "returned",
        "completion_reported", "closed"]
    assert body["timeline"][5]["note"] == "缺少上线验收材料"

    r = await client.get("/api/v1/audit", params={"object_type": "plan_work_item"}, headers=office.headers)
    if r.status_code == 200:  # department staff may lack audit.read; the chain is checked in the service test
        assert any(e["action"] == "plan.item_closed" for e in r.json().get("entries", r.json()))


async def test_units_see_and_edit_only_their_items(client, parties) -> None:  # type: ignore[no-untyped-def]
    office, lead, co, other, citizen = (parties[k] for k in ("office", "lead", "co", "other", "citizen"))
    shared = await create(client, office, public=False)
    public = await create(client, office, lead_org="kjj", co_orgs=[], public=True, title="科技局公开事项")
    assert [i["code"] for i in (await client.get(f"{API}/items", headers=office.headers)).json()] == ["21.1", "21.2"]
    assert [i["code"] for i in (await client.get(f"{API}/items", headers=lead.headers)).json()] == ["21.1"]
    assert [i["code"] for i in (await client.get(f"{API}/items", headers=co.headers)).json()] == ["21.1"]
    assert [i["code"] for i in (await client.get(f"{API}/items", headers=other.headers)).json()] == ["21.2"]
    assert [i["code"] for i in (await client.get(f"{API}/items", headers=citizen.headers)).json()] == ["21.2"]
    # hidden items are not found, whatever the action
    assert (await client.get(f"{API}/items/{shared['id']}", headers=other.headers)).status_code == 404
    assert (await client.get(f"{API}/items/{shared['id']}", headers=citizen.headers)).status_code == 404
    r = await client.post(f"{API}/items/{shared['id']}/acknowledge", json={"version": 1}, headers=other.headers)
    assert r.status_code == 404
    # the co-unit sees it but cannot acknowledge; the public item's timeline is not shown to citizens
    r = await client.post(f"{API}/items/{shared['id']}/acknowledge", json={"version": 1}, headers=co.headers)
    assert r.status_code == 403
    r = await client.get(f"{API}/items/{public['id']}", headers=citizen.headers)
    assert r.status_code == 200 and r.json()["timeline"] == [] and r.json()["can"] == []
    # only the plan office assigns
    r = await client.post(f"{API}/items", json=item_body(), headers=lead.headers)
    assert r.status_code == 403
    r = await client.post(f"{API}/items", json=item_body(), headers=citizen.headers)
    assert r.status_code == 403 and "needs scope" in r.json()["detail"]


async def test_stale_version_is_409(client, parties) -> None:  # type: ignore[no-untyped-def]
    office, lead = parties["office"], parties["lead"]
    item = await create(client, office)
    iid = item["id"]
    r = await client.patch(f"{API}/items/{iid}", json={"version": 1, "title": "新标题"}, headers=office.headers)
    assert r.status_code == 200 and r.json()["version"] == 2
    r = await client.patch(f"{API}/items/{iid}", json={"version": 1, "deliverable": "x"}, headers=office.headers)
    assert r.status_code == 409 and r.json()["errors"][0]["field"] == "version"
    r = await client.post(f"{API}/items/{iid}/acknowledge", json={"version": 1}, headers=lead.headers)
    assert r.status_code == 409
    r = await client.post(f"{API}/items/{iid}/acknowledge", json={"version": 2}, headers=lead.headers)
    assert r.status_code == 200
    r = await client.post(f"{API}/items/{iid}/acknowledge", json={"version": 3}, headers=lead.headers)
    assert r.status_code == 409 and r.json()["errors"][0]["field"] == "status"


async def test_extension_moves_the_due_date_only_on_approval(client, parties) -> None:  # type: ignore[no-untyped-def]
    office, lead, co = parties["office"], parties["lead"], parties["co"]
    item = await create(client, office)
    iid = item["id"]
    v = (await client.post(f"{API}/items/{iid}/acknowledge", json={"version": 1}, headers=lead.headers)).json()
    r = await client.post(f"{API}/items/{iid}/extensions", headers=co.headers,
                          json={"version": v["version"], "reason": "x", "new_due_date": "2016-12-30"})
    assert r.status_code == 403
    r = await client.post(f"{API}/items/{iid}/extensions", headers=lead.headers,
                          json={"version": v["version"], "reason": "x", "new_due_date": "2016-10-01"})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "new_due_date"
    r = await client.post(f"{API}/items/{iid}/extensions", headers=lead.headers,
                          json={"version": v["version"], "reason": "等待省级接口", "new_due_date": "2016-12-30"})
    assert r.status_code == 201, r.text
    first = r.json()["id"]
    after = (await client.get(f"{API}/items/{iid}", headers=lead.headers)).json()
    assert after["due_date"] == "2016-10-08"  # unchanged until approved
    r = await client.post(f"{API}/extensions/{first}/reject", json={"note": "理由不足"}, headers=office.headers)
    assert r.status_code == 200 and r.json()["status"] == "rejected"
    r = await client.post(f"{API}/extensions/{first}/approve", json={}, headers=office.headers)
    assert r.status_code == 409
    after = (await client.get(f"{API}/items/{iid}", headers=lead.headers)).json()
    r = await client.post(f"{API}/items/{iid}/extensions", headers=lead.headers,
                          json={"version": after["version"], "reason": "补充理由", "new_due_date": "2016-11-30"})
    second = r.json()["id"]
    r = await client.post(f"{API}/extensions/{second}/approve", json={"note": "同意"}, headers=lead.headers)
    assert r.status_code == 403
    r = await client.post(f"{API}/extensions/{second}/approve", json={"note": "同意"}, headers=office.headers)
    assert r.status_code == 200
    after = (await client.get(f"{API}/items/{iid}", headers=office.headers)).json()
    assert after["due_date"] == "2016-11-30" and after["original_due_date"] == "2016-10-08"
    assert [(e["status"], e["old_due_date"]) for e in after["extensions"]] == [
        ("rejected", "2016-10-08"), ("approved", "2016-10-08")]


@pytest.mark.parametrize(("change", "field"), [
    ({"due_date": "2015-13-01"}, "due_date"),
    ({"due_date": "1999-12-31"}, "due_date"),
    ({"start_date": "2016-11-01"}, None),  # after the due date
    ({"lead_org": "nosuch"}, "lead_org"),
    ({"co_orgs": ["jxw"]}, None),  # the lead cannot be a co-unit
    ({"co_orgs": ["hbj", "hbj"]}, "co_orgs"),
    ({"task": 47}, "task"),
    ({"title": "   "}, "title"),
    ({"kpis": [{"name": "x", "target": 5, "baseline": 5}]}, None),
    ({"kpis": [{"name": "x", "target": 1e300}]}, None),
    ({"extra": 1}, "extra"),
])
async def test_bad_items_are_422_and_name_the_problem(client, parties, change, field) -> None:  # type: ignore[no-untyped-def]
    r = await client.post(f"{API}/items", json=item_body(**change), headers=parties["office"].headers)
    assert r.status_code == 422, r.text
    if field:
        assert field in r.text
    assert (await client.get(f"{API}/items", headers=parties["office"].headers)).json() == []


async def test_bad_reports_are_refused(client, parties) -> None:  # type: ignore[no-untyped-def]
    office, lead = parties["office"], parties["lead"]
    item = await create(client, office)
    iid = item["id"]
    r = await client.post(f"{API}/items/{iid}/reports", json={"text": "too early"}, headers=lead.headers)
    assert r.status_code == 409  # not acknowledged yet
    await client.post(f"{API}/items/{iid}/acknowledge", json={"version": 1}, headers=lead.headers)
    for kpi_values in ([{"kpi": 999, "value": 1}], [{"kpi": item["kpis"][0]["id"], "value": "many"}]):
        r = await client.post(f"{API}/items/{iid}/reports", json={"text": "x", "kpi_values": kpi_values},
                              headers=lead.headers)
        assert r.status_code == 422, r.text
    r = await client.post(f"{API}/items/{iid}/reports", content=b'{"text": "x", "kpi_values": [{"kpi": 1, '
                          b'"value": NaN}]}', headers={**lead.headers, "Content-Type": "application/json"})
    assert r.status_code == 422
    r = await client.get(f"{API}/items/{iid}", headers=lead.headers)
    assert r.json()["reports"] == [] and r.json()["status"] == "acknowledged"


async def test_attachments_are_type_and_size_checked(client, parties) -> None:  # type: ignore[no-untyped-def]
    office, lead, co, other = parties["office"], parties["lead"], parties["co"], parties["other"]
    item = await create(client, office)
    iid = item["id"]
    await client.post(f"{API}/items/{iid}/acknowledge", json={"version": 1}, headers=lead.headers)
    rep = (await client.post(f"{API}/items/{iid}/reports", json={"text": "见附件"}, headers=lead.headers)).json()
    pdf = b"%PDF-1.4\n%test\n"
    url = f"{API}/reports/{rep['id']}/attachments"
    r = await client.post(url, files={"file": ("验收报告.pdf", pdf, "application/pdf")}, headers=lead.headers)
    assert r.status_code == 201, r.text
    att = r.json()
    assert att["size"] == len(pdf)
    for files in ({"file": ("x.exe", b"MZ...", "application/x-msdownload")},
                  {"file": ("x.pdf", b"<html>", "application/pdf")},
                  {"file": ("x.png", pdf, "application/pdf")},
                  {"file": ("x.pdf", b"%PDF-" + b"0" * (5 * 1024 * 1024), "application/pdf")}):
        r = await client.post(url, files=files, headers=lead.headers)
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "file", r.text
    r = await client.post(url, files={"file": ("a.pdf", pdf, "application/pdf")}, headers=co.headers)
    assert r.status_code == 403  # not the co-unit's report
    r = await client.get(f"{API}/attachments/{att['id']}", headers=co.headers)
    assert r.status_code == 200 and r.content == pdf and r.headers["content-type"] == "application/pdf"
    assert (await client.get(f"{API}/attachments/{att['id']}", headers=other.headers)).status_code == 404
    assert (await client.get(f"{API}/attachments/{att['id']}", headers=parties["citizen"].headers)).status_code == 404


async def test_breaking_down_into_sub_items(client, parties) -> None:  # type: ignore[no-untyped-def]
    office, lead, co = parties["office"], parties["lead"], parties["co"]
    item = await create(client, office)
    iid = item["id"]
    r = await client.post(f"{API}/items/{iid}/subitems", json={"title": "a", "due_date": "2016-05-01"},
                          headers=lead.headers)
    assert r.status_code == 409  # acknowledge first
    await client.post(f"{API}/items/{iid}/acknowledge", json={"version": 1}, headers=lead.headers)
    r = await client.post(f"{API}/items/{iid}/subitems", json={"title": "a", "due_date": "2016-12-01"},
                          headers=lead.headers)
    assert r.status_code == 422
    r = await client.post(f"{API}/items/{iid}/subitems", json={"title": "b", "due_date": "2016-05-01"},
                          headers=co.headers)
    assert r.status_code == 403
    r = await client.post(f"{API}/items/{iid}/subitems", json={"title": "需求调研", "due_date": "2016-05-01"},
                          headers=lead.headers)
    assert r.status_code == 201, r.text
    assert r.json()["code"] == "21.1.1" and r.json()["parent_id"] == iid and r.json()["status"] == "acknowledged"

"""DataStore: uploads in several encodings and formats, type inference and correction, transactional loads,
size limits, queries (filters, full text, sort, fields, distinct, paging) and hostile input."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from sqlalchemy import inspect

from tests.opendata.factories import CKAN, action, ok, package

AQI_CSV = ("站点名称,监测日期,AQI,PM2.5浓度,人口,达标\n"
           "金牛区,2016年3月5日,85,\"1,234.5\",\"1,200,000\",是\n"
           "锦江区,2016年3月6日,120,35.2,\"690,000\",否\n"
           "高新区,2016-03-07,,41,\"900,000\",是\n"
           "双流区,2016/03/08,60,28.75,\"1,466,000\",否\n")


async def upload(client, headers, dataset: str, filename: str, data: bytes,  # type: ignore[no-untyped-def]
                 **form: Any) -> Any:
    fields = {"package_id": dataset, **{k: json.dumps(v) if not isinstance(v, str) else v for k, v in form.items()}}
    return await client.post(CKAN + "resource_create", data=fields, files={"upload": (filename, data)},
                             headers=headers)


async def _dataset(client, hbj, **over: Any) -> None:  # type: ignore[no-untyped-def]
    await ok(client, "package_create", hbj, **package(**over))


def _tables(ctx) -> set[str]:  # type: ignore[no-untyped-def]
    with ctx.db.engine.connect() as conn:
        return {t for t in inspect(conn).get_table_names() if t.startswith("opendata_ds_")}


async def test_csv_types_are_inferred_and_queries_work(client, hbj) -> None:  # type: ignore[no-untyped-def]
    await _dataset(client, hbj)
    r = await upload(client, hbj, "air-quality", "aqi.csv", AQI_CSV.encode())
    assert r.status_code == 200, r.text
    res = r.json()["result"]
    assert res["datastore_active"] is True and res["format"] == "CSV" and res["encoding"] == "utf-8"
    out = await ok(client, "datastore_search", resource_id=res["id"])
    types = {f["id"]: f["type"] for f in out["fields"]}
    assert types == {"_id": "int", "站点名称": "text", "监测日期": "date", "AQI": "int", "PM2.5浓度": "numeric",
                     "人口": "int", "达标": "bool"}
    assert out["total"] == 4
    first = out["records"][0]
    assert first["监测日期"] == "2016-03-05" and first["PM2.5浓度"] == 1234.5 and first["人口"] == 1_200_000
    assert first["达标"] is True and out["records"][2]["AQI"] is None
    out = await ok(client, "datastore_search", resource_id=res["id"], filters={"达标": True}, sort="AQI desc",
                   fields=["站点名称", "AQI"])
    assert [r["站点名称"] for r in out["records"]] == ["金牛区", "高新区"]  # NULL AQI last
    assert list(out["records"][0]) == ["站点名称", "AQI"]
    out = await ok(client, "datastore_search", resource_id=res["id"], filters={"站点名称": ["金牛区", "双流区"]})
    assert out["total"] == 2
    out = await ok(client, "datastore_search", resource_id=res["id"], q="锦江")
    assert [r["站点名称"] for r in out["records"]] == ["锦江区"]
    out = await ok(client, "datastore_search", resource_id=res["id"], fields="达标", distinct=True, sort="达标")
    assert [r["达标"] for r in out["records"]] == [False, True]
    out = await ok(client, "datastore_search", resource_id=res["id"], limit=1, offset=1, sort="监测日期")
    assert out["total"] == 4 and [r["站点名称"] for r in out["records"]] == ["锦江区"]
    r = await client.get(CKAN + "datastore_search", params={"resource_id": res["id"], "filters": '{"AQI": "85"}'})
    assert r.json()["result"]["total"] == 1


@pytest.mark.parametrize("encoding", ["utf-8-sig", "gbk", "gb18030"])
async def test_encodings_are_detected(client, hbj, encoding: str) -> None:  # type: ignore[no-untyped-def]
    await _dataset(client, hbj)
    text = AQI_CSV + "龙泉驿区,2016年3月9日,70,30,\"600,000\",是\n"
    if encoding == "gb18030":
        text += "𠀀测试,2016年3月10日,1,1,1,否\n"  # a character outside GBK
    r = await upload(client, hbj, "air-quality", "aqi.csv", text.encode(encoding))
    assert r.status_code == 200, r.text
    res = r.json()["result"]
    assert res["encoding"] == ("utf-8-sig" if encoding == "utf-8-sig" else "gb18030")
    out = await ok(client, "datastore_search", resource_id=res["id"], sort="_id")
    assert out["fields"][1]["id"] == "站点名称"
    assert out["records"][4]["站点名称"] == "龙泉驿区"
    if encoding == "gb18030":
        assert out["records"][5]["站点名称"] == "𠀀测试"


async def test_bad_files_leave_nothing_behind(client, hbj, ctx) -> None:  # type: ignore[no-untyped-def]
    await _dataset(client, hbj)
    mixed = AQI_CSV.encode("utf-8") * 3 + "春熙路街道,2016年3月5日,1,1,1,是\n".encode("gbk") * 3
    ragged = (AQI_CSV + "少一列,2016年3月9日,70\n").encode()
    malformed = b'a,b\n"unterminated,1\n'
    for name, data, words in [("mixed.csv", mixed, "encoding"), ("ragged.csv", ragged, "line 6 has 3 cells"),
                              ("bad.csv", malformed, "malformed"), ("empty.csv", b"", "empty"),
                              ("bad.json", b"{\"a\": ", "invalid JSON"), ("bad.xlsx", b"PK\x03\x04nope", "XLSX"),
                              ("bad.geojson", b'{"type": "Feature"}', "FeatureCollection")]:
        r = await upload(client, hbj, "air-quality", name, data)
        assert r.status_code == 409, (name, r.text)
        assert r.json()["error"]["__type"] == "Validation Error"
        assert words in r.json()["error"]["message"], (name, r.json())
    # a declared type that a late row breaks: the rows before it are not kept either
    late = ("编号,名称\n" + "".join(f"{i},站{i}\n" for i in range(2500)) + "x12,坏行\n").encode()
    r = await upload(client, hbj, "air-quality", "late.csv", late)
    assert r.status_code == 200  # inferred as text, loads
    r = await upload(client, hbj, "air-quality", "late.csv", late, fields=[{"id": "编号", "type": "int"}])
    assert r.status_code == 409 and "row 2502" in r.json()["error"]["message"]
    shown = await ok(client, "package_show", id="air-quality")
    assert len(shown["resources"]) == 1
    assert len(_tables(ctx)) == 1


async def test_size_limit(client, hbj, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from cityplus.modules.opendata.settings import opendata_settings

    monkeypatch.setenv("CITYPLUS_OPENDATA_MAX_UPLOAD_BYTES", "2048")
    opendata_settings.cache_clear()
    try:
        await _dataset(client, hbj)
        big = ("a,b\n" + "1,2\n" * 1000).encode()
        r = await upload(client, hbj, "air-quality", "big.csv", big)
        assert r.status_code == 409 and "at most 2048" in r.json()["error"]["message"]
        assert (await ok(client, "package_show", id="air-quality"))["resources"] == []
    finally:
        monkeypatch.delenv("CITYPLUS_OPENDATA_MAX_UPLOAD_BYTES")
        opendata_settings.cache_clear()


async def test_publisher_corrects_types(client, hbj) -> None:  # type: ignore[no-untyped-def]
    await _dataset(client, hbj)
    csv_ = "邮编,金额\n610041,\"1,000\"\n610000,20\n".encode()
    res = (await upload(client, hbj, "air-quality", "codes.csv", csv_)).json()["result"]
    out = await ok(client, "datastore_search", resource_id=res["id"])
    assert out["records"][0]["邮编"] == 610041
    r = await action(client, "resource_patch", hbj, id=res["id"], fields=[{"id": "邮编", "type": "text"},
                                                                          {"id": "金额", "type": "numeric"}])
    assert r.status_code == 200, r.text
    out = await ok(client, "datastore_search", resource_id=res["id"])
    assert out["records"][0]["邮编"] == "610041" and out["records"][0]["金额"] == 1000.0
    r = await action(client, "resource_patch", hbj, id=res["id"], fields=[{"id": "nope", "type": "text"}])
    assert r.status_code == 409 and "nope" in r.json()["error"]
    r = await action(client, "resource_patch", hbj, id=res["id"], fields=[{"id": "邮编", "type": "money"}])
    assert r.status_code == 409


async def test_xlsx_json_geojson(client, hbj) -> None:  # type: ignore[no-untyped-def]
    from datetime import datetime

    from openpyxl import Workbook

    await _dataset(client, hbj)
    wb = Workbook()
    ws = wb.active
    ws.append(["线路", "开通日期", "站点数", "票价"])
    ws.append(["1号线", datetime(2010, 9, 27), 35, 2.0])
    ws.append(["2号线", datetime(2012, 9, 16), 32, 2.5])
    buf = io.BytesIO()
    wb.save(buf)
    res = (await upload(client, hbj, "air-quality", "metro.xlsx", buf.getvalue())).json()["result"]
    out = await ok(client, "datastore_search", resource_id=res["id"])
    assert {f["id"]: f["type"] for f in out["fields"]}["开通日期"] == "date"
    assert out["records"][1]["票价"] == 2.5 and out["records"][0]["站点数"] == 35
    data = json.dumps([{"name": "天府广场", "visitors": 1200}, {"name": "宽窄巷子", "visitors": 3400}],
                      ensure_ascii=False).encode()
    res = (await upload(client, hbj, "air-quality", "visits.json", data)).json()["result"]
    out = await ok(client, "datastore_search", resource_id=res["id"], sort="visitors desc")
    assert out["records"][0]["name"] == "宽窄巷子"
    geo = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "geometry": {"type": "Point", "coordinates": [104.06, 30.66]},
         "properties": {"名称": "天府广场", "车位": 500}}]}
    res = (await upload(client, hbj, "air-quality", "parks.geojson", json.dumps(geo).encode())).json()["result"]
    out = await ok(client, "datastore_search", resource_id=res["id"])
    assert out["records"][0]["车位"] == 500 and json.loads(out["records"][0]["geometry"])["type"] == "Point"


async def test_hostile_queries_are_refused_and_harmless(client, hbj, ctx) -> None:  # type: ignore[no-untyped-def]
    await _dataset(client, hbj)
    res = (await upload(client, hbj, "air-quality", "aqi.csv", AQI_CSV.encode())).json()["result"]
    rid = res["id"]
    hostile: list[dict[str, Any]] = [
        {"filters": {"AQI; DROP TABLE opendata_datasets; --": 1}},
        {"filters": {"AQI": "1 OR 1=1"}},
        {"filters": {"AQI": {"$gt": 1}}},
        {"sort": "AQI; DROP TABLE opendata_datasets"},
        {"sort": "(SELECT 1)"},
        {"sort": "AQI desc, 站点名称 sideways"},
        {"fields": ["_id) FROM opendata_datasets --"]},
        {"fields": "AQI,\"x\"\"y"},
        {"limit": -1}, {"limit": 10**9}, {"offset": -5}, {"limit": "1; SELECT"},
        {"records_format": "csv"},
        {"q": ["not", "text"]},
        {"resource_id": "' OR '1'='1"},
    ]
    for extra in hostile:
        r = await action(client, "datastore_search", None, **{"resource_id": rid, **extra})
        assert r.status_code in (404, 409), (extra, r.status_code, r.text)
        assert r.json()["success"] is False
    for q in ("%' OR 1=1 --", "_", "%"):
        out = await ok(client, "datastore_search", resource_id=rid, q=q)
        assert out["total"] == 0, q
    out = await ok(client, "datastore_search", resource_id=rid, filters={"站点名称": "金牛区' OR '1'='1"})
    assert out["total"] == 0
    assert (await ok(client, "datastore_search", resource_id=rid))["total"] == 4
    assert (await ok(client, "package_show", id="air-quality"))["name"] == "air-quality"


async def test_data_of_conditional_datasets_is_not_public(client, hbj, jiaow) -> None:  # type: ignore[no-untyped-def]
    await _dataset(client, hbj, opening="conditional", sharing="share")
    res = (await upload(client, hbj, "air-quality", "aqi.csv", AQI_CSV.encode())).json()["result"]
    r = await action(client, "datastore_search", None, resource_id=res["id"])
    assert r.status_code == 403 and r.json()["error"]["__type"] == "Authorization Error"
    assert (await ok(client, "package_show", id="air-quality"))["resources"][0]["id"] == res["id"]
    assert (await ok(client, "datastore_search", jiaow, resource_id=res["id"]))["total"] == 4  # 无条件共享
    assert (await ok(client, "datastore_search", hbj, resource_id=res["id"]))["total"] == 4
    r = await action(client, "datastore_upsert", jiaow, resource_id=res["id"], records=[{"AQI": 1}],
                     method="insert")
    assert r.status_code == 403


async def test_datastore_create_upsert_delete(client, hbj, ctx) -> None:  # type: ignore[no-untyped-def]
    await _dataset(client, hbj)
    created = await ok(client, "datastore_create", hbj, resource={"package_id": "air-quality", "name": "停车场实时"},
                       fields=[{"id": "编号", "type": "text"}, {"id": "空位", "type": "int"},
                               {"id": "更新时间", "type": "timestamp"}],
                       primary_key="编号", records=[{"编号": "P1", "空位": 10, "更新时间": "2016-03-05 08:00"}])
    rid = created["resource_id"]
    await ok(client, "datastore_upsert", hbj, resource_id=rid, method="upsert",
             records=[{"编号": "P1", "空位": 7}, {"编号": "P2", "空位": 30, "更新时间": "2016年3月5日 08:05"}])
    out = await ok(client, "datastore_search", resource_id=rid, sort="编号")
    assert [(r["编号"], r["空位"]) for r in out["records"]] == [("P1", 7), ("P2", 30)]
    assert out["records"][1]["更新时间"] == "2016-03-05T08:05:00"
    r = await action(client, "datastore_upsert", hbj, resource_id=rid, method="update",
                     records=[{"编号": "P1", "空位": 1}, {"编号": "P9", "空位": 1}])
    assert r.status_code == 409
    assert (await ok(client, "datastore_search", resource_id=rid, filters={"编号": "P1"}))["records"][0]["空位"] == 7
    r = await action(client, "datastore_upsert", hbj, resource_id=rid, method="insert", records=[{"编号": "P1"}])
    assert r.status_code == 409  # duplicate primary key → Validation Error, not 500
    r = await action(client, "datastore_upsert", hbj, resource_id=rid, records=[{"空位": "many", "编号": "P3"}])
    assert r.status_code == 409 and "空位" in r.json()["error"]
    await ok(client, "datastore_delete", hbj, resource_id=rid, filters={"编号": "P2"})
    assert (await ok(client, "datastore_search", resource_id=rid))["total"] == 1
    await ok(client, "datastore_delete", hbj, resource_id=rid)
    r = await action(client, "datastore_search", None, resource_id=rid)
    assert r.status_code == 404
    assert _tables(ctx) == set()

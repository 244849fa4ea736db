"""Chinese full-text search with jieba: segmentation, AND semantics, ranking, facets, sorting (both databases)."""

from __future__ import annotations

from tests.opendata.factories import ok, package


async def _catalogue(client, hbj, jiaow) -> None:  # type: ignore[no-untyped-def]
    await ok(client, "package_create", hbj, **package("aqi-live"))
    await ok(client, "package_create", hbj, **package(
        "water-quality", title="成都市地表水水质月报", title_en="Surface water quality monthly",
        notes="岷江、沱江水系国控省控断面水质监测结果。", tags=[{"name": "水质"}], license_id="CC0-1.0"))
    await ok(client, "package_create", jiaow, **package(
        "bus-stops", org="jiaow", title="公交线路站点", title_en="Bus routes and stops",
        notes="中心城区公交线路及站点位置，含首末班时间。", tags=[{"name": "公交"}, {"name": "交通"}],
        groups=[{"name": "area-10"}, {"name": "TRAN"}], frequency="MONTHLY"))
    await ok(client, "package_create", jiaow, **package(
        "metro-flow", org="jiaow", title="地铁客流统计", title_en="Metro ridership",
        notes="各线路日客流量，公交与地铁换乘客流另见公交数据集。", tags=[{"name": "地铁"}],
        groups=[{"name": "area-10"}], opening="conditional"))
    await ok(client, "package_create", jiaow, **package("hidden-bus", org="jiaow", title="公交车辆GPS轨迹",
                                                        private=True))


async def test_chinese_words_and_sub_words_match(client, hbj, jiaow) -> None:  # type: ignore[no-untyped-def]
    await _catalogue(client, hbj, jiaow)
    names = lambda res: [p["name"] for p in res["results"]]  # noqa: E731
    assert names(await ok(client, "package_search", q="空气质量")) == ["aqi-live"]
    found = await ok(client, "package_search", q="公交")
    assert names(found) == ["bus-stops", "metro-flow"]  # title match outranks a description match
    assert "hidden-bus" not in names(found)
    assert names(await ok(client, "package_search", q="水质 断面")) == ["water-quality"]
    assert names(await ok(client, "package_search", q="水质 公交")) == []  # every word must match
    assert names(await ok(client, "package_search", q="Metro ridership")) == ["metro-flow"]
    assert names(await ok(client, "package_search", q="bus")) == ["bus-stops"]
    assert (await ok(client, "package_search", q="*:*"))["count"] == 4
    assert (await ok(client, "package_search", q="质量 成都市"))["count"] == 1


async def test_facets_and_filters(client, hbj, jiaow) -> None:  # type: ignore[no-untyped-def]
    await _catalogue(client, hbj, jiaow)
    res = await ok(client, "package_search", **{"facet.field": '["organization", "groups", "tags", "license_id", '
                                                               '"opening"]', "rows": 0})
    assert res["count"] == 4 and res["results"] == []
    assert res["facets"]["organization"] == {"hbj": 2, "jiaow": 2}
    assert res["facets"]["groups"]["area-10"] == 2 and res["facets"]["groups"]["ENVI"] == 2
    assert res["facets"]["license_id"] == {"CC-BY-4.0": 3, "CC0-1.0": 1}
    assert res["facets"]["opening"] == {"open": 3, "conditional": 1}
    items = res["search_facets"]["groups"]["items"]
    assert {"name": "area-10", "display_name": "智慧交通", "count": 2} in items
    res = await ok(client, "package_search", fq='organization:jiaow groups:"area-10"', q="公交",
                   **{"facet.field": '["tags"]'})
    assert res["count"] == 2 and res["facets"]["tags"] == {"交通": 1, "公交": 1, "地铁": 1}
    res = await ok(client, "package_search", fq="tags:水质")
    assert [p["name"] for p in res["results"]] == ["water-quality"]


async def test_sort_and_paging(client, hbj, jiaow) -> None:  # type: ignore[no-untyped-def]
    await _catalogue(client, hbj, jiaow)
    await ok(client, "package_patch", hbj, id="aqi-live", title="成都市空气质量实时监测数据（更新）")
    res = await ok(client, "package_search", sort="metadata_modified desc", rows=2)
    assert res["count"] == 4 and res["results"][0]["name"] == "aqi-live" and len(res["results"]) == 2
    res = await ok(client, "package_search", sort="name asc", rows=2, start=2)
    assert [p["name"] for p in res["results"]] == ["metro-flow", "water-quality"]
    res = await ok(client, "package_search", q="公交", start=100)
    assert res["count"] == 2 and res["results"] == []  # past the end: the total still counts
    r = await client.get("/api/3/action/package_search", params={"sort": "name; drop table x"})
    assert r.status_code == 400 and r.json()["error"]["__type"] == "Search Query Error"

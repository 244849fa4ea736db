"""XLSX export and all-or-nothing import, the quarterly PDF and the public progress view, opened and read back."""

from __future__ import annotations

from io import BytesIO

from openpyxl import Workbook, load_workbook

from tests.plan.conftest import create

API = "/api/v1/plan"


async def _closed_and_open(client, parties) -> tuple[dict, dict]:  # type: ignore[no-untyped-def]
    office, lead = parties["office"], parties["lead"]
    done = await create(client, office, due_date="2016-06-30", title="数据开放平台上线")
    late = await create(client, office, task=12, lead_org="hbj", co_orgs=["jxw"], due_date="2016-09-30",
                        title="空气质量监测网络建设", public=False, kpis=[])
    iid = done["id"]
    v = (await client.post(f"{API}/items/{iid}/acknowledge", json={"version": 1}, headers=lead.headers)).json()
    r = await client.post(f"{API}/items/{iid}/completion", headers=lead.headers,
                          json={"version": v["version"], "text": "平台已上线运行", "public": True,
                                "kpi_values": [{"kpi": done["kpis"][0]["id"], "value": 100}]})
    r = await client.post(f"{API}/items/{iid}/close", json={"version": r.json()["version"]}, headers=office.headers)
    assert r.status_code == 200
    return r.json(), late


async def test_xlsx_export_has_tasks_items_and_latest_reports(client, parties) -> None:  # type: ignore[no-untyped-def]
    done, late = await _closed_and_open(client, parties)
    r = await client.get(f"{API}/export.xlsx", headers=parties["office"].headers)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/vnd.openxmlformats")
    wb = load_workbook(BytesIO(r.content))
    assert wb.sheetnames == ["任务 Tasks", "工作事项 Items", "最新报告 Reports"]
    tasks = list(wb["任务 Tasks"].iter_rows(values_only=True))
    assert len(tasks) == 47  # header + 46 tasks in plan order
    row21 = next(t for t in tasks if t[1] == 21)
    assert row21[0] == "(二十一)" and row21[6:9] == (1, 1, 1)
    items = list(wb["工作事项 Items"].iter_rows(values_only=True))
    assert items[0][0] == "编号 Code"
    by_code = {row[0]: row for row in items[1:]}
    assert set(by_code) == {"21.1", "12.1"}
    assert by_code["21.1"][1] == "(二十一) 21" and by_code["21.1"][4] == "市经信委"
    assert by_code["21.1"][9] == "已销号" and by_code["21.1"][10] == "已完成"
    assert by_code["12.1"][4] == "市环保局" and by_code["12.1"][5] == "市经信委"
    assert by_code["12.1"][9] == "已交办" and by_code["12.1"][10] == "红灯"  # overdue since 2016
    assert by_code["21.1"][15] == "平台已上线运行"
    reports = list(wb["最新报告 Reports"].iter_rows(values_only=True))
    assert [r[0] for r in reports[1:]] == ["21.1"]
    # units cannot export
    assert (await client.get(f"{API}/export.xlsx", headers=parties["lead"].headers)).status_code == 403


def _workbook(rows: list[list[object]], header: list[str] | None = None) -> bytes:
    from cityplus.modules.plan.exports import IMPORT_COLUMNS

    wb = Workbook()
    ws = wb.active
    ws.append(header or [h for h, _f in IMPORT_COLUMNS])
    for row in rows:
        ws.append(row)
    buf = BytesIO()
    wb.save(buf)
    return buf.getvalue()


async def test_import_is_all_or_nothing_with_row_and_column(client, parties) -> None:  # type: ignore[no-untyped-def]
    office = parties["office"]
    r = await client.get(f"{API}/import-template.xlsx", headers=office.headers)
    template = load_workbook(BytesIO(r.content)).active
    assert [c.value for c in template[1]][:4] == ["任务编号 Task", "事项名称 Title", "交付成果 Deliverable",
                                                  "牵头单位 Lead unit"]
    good = [21, "数据开放平台上线", "开放 100 个数据集", "市经信委", "市发改委、市环保局", "2016-01-01", "2016-06-30",
            "是", "开放数据集", "个", 0, 100]
    bad = [
        [99, "不存在的任务", "", "市经信委", "", "2016-01-01", "2016-06-30", "否", "", "", "", ""],
        [12, "单位名称错误", "", "市不存在局", "", "2016-01-01", "2016-06-30", "否", "", "", "", ""],
        [12, "日期错误", "", "市环保局", "", "2016-07-01", "2016-06-30", "否", "", "", "", ""],
        [12, "指标错误", "", "市环保局", "", "", "2016-06-30", "也许", "监测站", "个", 5, "很多"],
    ]
    files = {"file": ("items.xlsx", _workbook([good, *bad]), "application/octet-stream")}
    r = await client.post(f"{API}/import", files=files, headers=office.headers)
    assert r.status_code == 422, r.text
    errors = r.json()["errors"]
    found = {(e["row"], e["column"]) for e in errors}
    assert {(3, "A"), (4, "D"), (6, "H"), (6, "L")} <= found, errors
    assert any(e["row"] == 5 for e in errors)  # due before start
    assert not any(e["row"] == 2 for e in errors)
    assert (await client.get(f"{API}/items", headers=office.headers)).json() == []  # nothing imported

    second = [12, "空气监测站建设", "", "hbj", "", None, "2016-09-30", "否", "", "", "", ""]
    files = {"file": ("items.xlsx", _workbook([good, second]), "application/octet-stream")}
    r = await client.post(f"{API}/import", files=files, headers=office.headers)
    assert r.status_code == 201, r.text
    assert r.json() == {"created": 2, "codes": ["21.1", "12.1"]}
    items = (await client.get(f"{API}/items", headers=office.headers)).json()
    first = next(i for i in items if i["code"] == "21.1")
    assert first["co_orgs"] == ["fgw", "hbj"] and first["public"] is True and first["due_date"] == "2016-06-30"

    for content in (b"not a workbook", _workbook([good], header=["x"] * 12)):
        r = await client.post(f"{API}/import", files={"file": ("x.xlsx", content, "application/octet-stream")},
                              headers=office.headers)
        assert r.status_code == 422, r.text
    r = await client.post(f"{API}/import", files={"file": ("x.xlsx", _workbook([good]), "application/x")},
                          headers=parties["lead"].headers)
    assert r.status_code == 403


async def test_quarterly_pdf_has_totals_charts_and_a_table_per_area(client, parties) -> None:  # type: ignore[no-untyped-def]
    from pypdf import PdfReader

    from cityplus.modules.plan.report_pdf import quarter_end
    from cityplus.modules.plan.service import city_today

    await _closed_and_open(client, parties)
    today = city_today()  # the items were assigned today, so report on this quarter
    year, quarter = today.year, (today.month - 1) // 3 + 1
    r = await client.get(f"{API}/quarterly.pdf", params={"year": year, "quarter": quarter},
                         headers=parties["office"].headers)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/pdf"
    reader = PdfReader(BytesIO(r.content))
    assert len(reader.pages) == 3  # summary with charts, then one page per area (tasks 12 and 21)
    text = "\n".join(p.extract_text() for p in reader.pages)
    assert f"{year} Q{quarter}" in text and f"as of {quarter_end(year, quarter).isoformat()}" in text
    assert "Items: 2" in text and "Closed: 1" in text and "Overdue: 1" in text
    assert "21.1" in reader.pages[2].extract_text() and "12.1" in reader.pages[1].extract_text()
    assert "2016-09-30" in reader.pages[1].extract_text()
    r = await client.get(f"{API}/quarterly.pdf", params={"year": 2016, "quarter": 5}, headers=parties["office"].headers)
    assert r.status_code == 422


async def test_public_progress_shows_only_public_items_and_reports(client, parties) -> None:  # type: ignore[no-untyped-def]
    await _closed_and_open(client, parties)
    r = await client.get(f"{API}/progress")
    assert r.status_code == 200
    areas = r.json()["areas"]
    assert [a["area"] for a in areas] == [6]  # only the public item (task 21, area 六)
    item = areas[0]["tasks"][0]["work_items"][0]
    assert item["code"] == "21.1" and item["status"] == "closed" and item["lead_name"]["zh"] == "市经信委"
    assert item["latest_report"]["text"] == "平台已上线运行" and item["kpis"][0]["progress"] == 1.0
    assert (await client.get(f"{API}/progress", params={"area": 4})).json()["areas"] == []


async def test_task_page_and_coverage_show_items_and_live_usage(client, parties) -> None:  # type: ignore[no-untyped-def]
    await _closed_and_open(client, parties)
    page = await client.get("/plan/tasks/21", headers={"Accept": "text/html"})
    assert page.status_code == 200 and "数据开放平台上线" in page.text
    page = await client.get("/plan/tasks/42", headers={"Accept": "text/html"})
    assert "work_items: 2" in page.text  # the plan module serves task 42; its live figures show there
    page = await client.get("/plan/tasks/12", headers={"Accept": "text/html"})
    assert "空气质量监测网络建设" not in page.text  # not public: the anonymous visitor does not see it
    page = await client.get("/plan/tasks/12", headers={"Accept": "text/html", **parties["lead"].headers})
    assert "空气质量监测网络建设" in page.text  # the co-unit does
    cov = (await client.get(f"{API}/coverage")).json()
    plan_ref = next(m for row in cov["tasks"] if row["task"] == 42 for m in row["modules"] if m["name"] == "plan")
    assert plan_ref["usage"]["work_items"] == 2 and plan_ref["usage"]["work_items_closed"] == 1


async def test_user_text_is_never_a_formula_in_the_export(client, parties) -> None:  # type: ignore[no-untyped-def]
    title = '=HYPERLINK("http://evil.example","点击")'
    await create(client, parties["office"], title=title)
    r = await client.get(f"{API}/export.xlsx", headers=parties["office"].headers)
    ws = load_workbook(BytesIO(r.content))["工作事项 Items"]
    cell = ws["C2"]
    assert cell.value == title and cell.data_type == "s"


async def test_markup_in_user_text_cannot_break_the_pdf(client, parties) -> None:  # type: ignore[no-untyped-def]
    from pypdf import PdfReader

    from cityplus.modules.plan.service import city_today

    await create(client, parties["office"], title="<b>未闭合 & <font name=x>", public=False)
    today = city_today()
    r = await client.get(f"{API}/quarterly.pdf", params={"year": today.year, "quarter": (today.month - 1) // 3 + 1},
                         headers=parties["office"].headers)
    assert r.status_code == 200, r.text
    text = "".join(p.extract_text() for p in PdfReader(BytesIO(r.content)).pages)
    assert "21.1" in text

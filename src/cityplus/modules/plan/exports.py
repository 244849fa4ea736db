"""XLSX export and import of work items (openpyxl), and the public progress view (政务公开).

The export has one sheet each for tasks, work items and latest reports, with the plan's numbering ((二十一) 21,
item 21.2) and the units' Chinese names, headers in Chinese and English. The import reads the template's rows,
checks every row (task, units, dates, KPI) and creates nothing when any row fails; the errors name row and column.
"""

from __future__ import annotations

from datetime import date, datetime
from io import BytesIO
from typing import Any
from urllib.parse import quote
from zipfile import BadZipFile

from openpyxl import Workbook, load_workbook
from openpyxl.styles import Font
from openpyxl.utils import get_column_letter
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from cityplus.core import audit
from cityplus.core.audit import Actor
from cityplus.core.errors import Unprocessable
from cityplus.core.identity import service as identity
from cityplus.modules.plan.models import PlanArea, PlanTask, PlanWorkItem
from cityplus.modules.plan.schemas import ItemCreate
from cityplus.modules.plan.supervision import (
    Access,
    create_item,
    latest_reports,
    light,
    list_items,
    require_office,
)

IMPORT_MAX_BYTES = 5 * 1024 * 1024
IMPORT_MAX_ROWS = 2000
STATUS_ZH = {"assigned": "已交办", "acknowledged": "已签收", "in_progress": "推进中",
             "completion_reported": "已报完成", "closed": "已销号", "returned": "已退回"}
LIGHT_ZH = {"green": "绿灯", "yellow": "黄灯", "red": "红灯", "done": "已完成"}

# The import template: (header, field). One KPI per row; co-units separated by 、 or commas.
IMPORT_COLUMNS = [
    ("任务编号 Task", "task"),
    ("事项名称 Title", "title"),
    ("交付成果 Deliverable", "deliverable"),
    ("牵头单位 Lead unit", "lead_org"),
    ("配合单位 Co-units", "co_orgs"),
    ("开始日期 Start date", "start_date"),
    ("完成时限 Due date", "due_date"),
    ("是否公开 Public (是/否)", "public"),
    ("指标名称 KPI", "kpi_name"),
    ("指标单位 KPI unit", "kpi_unit"),
    ("基线值 Baseline", "kpi_baseline"),
    ("目标值 Target", "kpi_target"),
]
_COLUMN_OF = {field: get_column_letter(i) for i, (_h, field) in enumerate(IMPORT_COLUMNS, start=1)}
_KPI_FIELDS = ("kpi_name", "kpi_unit", "kpi_baseline", "kpi_target")


def attachment_disposition(filename: str) -> str:
    """Content-Disposition for a download, safe for any file name (RFC 6266 filename*)."""
    ascii_name = "".join(c if c.isascii() and (c.isalnum() or c in "._-") else "_" for c in filename) or "file"
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(filename)}"


def _sheet(wb: Workbook, title: str, headers: list[str], rows: list[list[Any]]) -> None:
    ws = wb.create_sheet(title)
    ws.append(headers)
    for cell in ws[1]:
        cell.font = Font(bold=True)
    for row in rows:
        ws.append(row)
        for cell in ws[ws.max_row]:
            # Text from users is never a formula: openpyxl would store "=…" as one (spreadsheet formula injection).
            if isinstance(cell.value, str) and cell.value.startswith("="):
                cell.data_type = "s"
    ws.freeze_panes = "A2"
    for i, h in enumerate(headers, start=1):
        ws.column_dimensions[get_column_letter(i)].width = max(12, min(50, len(h) + 4))


def export_xlsx(session: Session, actor: Actor, day: date, warn: int) -> bytes:
    """Tasks, work items and latest reports as a workbook (plan office)."""
    require_office(session, actor)
    items = list_items(session, Access(office=True, org=actor.org_code))
    orgs = {o.code: o.name_zh for o in identity.list_organisations(session)}
    tasks = list(session.scalars(select(PlanTask).order_by(PlanTask.number)))
    latest = latest_reports(session, [i.id for i in items])
    wb = Workbook()
    wb.remove(wb.active)
    by_task: dict[int, list[PlanWorkItem]] = {}
    for i in items:
        if i.parent_id is None:
            by_task.setdefault(i.task_number, []).append(i)
    task_rows = []
    for t in tasks:
        mine = by_task.get(t.number, [])
        closed = sum(1 for i in mine if i.status == "closed")
        task_rows.append([f"({t.numeral})", t.number, t.area_number, t.title_zh,
                          t.units[0].name_zh if t.units else "", "、".join(u.name_zh for u in t.units[1:]),
                          len(mine), closed, round(closed / len(mine), 4) if mine else None,
                          sum(1 for i in mine if light(i, day, warn) == "red")])
    _sheet(wb, "任务 Tasks", ["序号 Numeral", "任务 Task", "领域 Area", "任务名称 Title", "牵头单位 Lead unit",
                              "责任单位 Other units", "事项数 Items", "已销号 Closed", "完成率 Completion rate",
                              "红灯 Red"], task_rows)
    item_rows = []
    for i in items:
        r = latest.get(i.id)
        kpis = "；".join(f"{k.name} {k.current if k.current is not None else '-'}/{k.target}{k.unit}"
                        for k in i.kpis)
        item_rows.append([i.code, f"({i.task.numeral}) {i.task_number}", i.title, i.deliverable,
                          orgs.get(i.lead_org, i.lead_org), "、".join(orgs.get(c, c) for c in i.co_orgs),
                          i.start_date, i.due_date, i.original_due_date, STATUS_ZH[i.status],
                          LIGHT_ZH[light(i, day, warn)], "是" if i.public else "否", i.completed_on, kpis,
                          r.created_at.date() if r else None, r.text if r else ""])
    _sheet(wb, "工作事项 Items", ["编号 Code", "任务 Task", "事项名称 Title", "交付成果 Deliverable",
                                  "牵头单位 Lead unit", "配合单位 Co-units", "开始日期 Start", "完成时限 Due",
                                  "原定时限 Original due", "状态 Status", "预警 Light", "公开 Public",
                                  "完成日期 Completed", "指标 KPIs", "最新报告日期 Latest report",
                                  "最新进展 Latest progress"], item_rows)
    report_rows = [[i.code, r.created_at.date(), orgs.get(r.org_code, r.org_code), r.author,
                    "完成报告" if r.kind == "completion" else "进展报告", r.text]
                   for i in items if (r := latest.get(i.id)) is not None]
    _sheet(wb, "最新报告 Reports", ["编号 Code", "日期 Date", "报送单位 Unit", "报送人 Author", "类型 Kind",
                                    "内容 Text"], report_rows)
    for ws in wb.worksheets:
        for row in ws.iter_rows(min_row=2):
            for cell in row:
                if isinstance(cell.value, date):
                    cell.number_format = "yyyy-mm-dd"
    buf = BytesIO()
    wb.save(buf)
    return buf.getvalue()


def import_template() -> bytes:
    """The empty import template with one example row."""
    wb = Workbook()
    ws = wb.active
    ws.title = "工作事项 Items"
    ws.append([h for h, _f in IMPORT_COLUMNS])
    for cell in ws[1]:
        cell.font = Font(bold=True)
    ws.append([21, "市级政府数据开放平台上线", "平台上线并开放 100 个数据集", "市经信委", "市发改委、市政府办公厅",
               "2016-01-01", "2016-06-30", "是", "开放数据集", "个", 0, 100])
    for i in range(1, len(IMPORT_COLUMNS) + 1):
        ws.column_dimensions[get_column_letter(i)].width = 22
    buf = BytesIO()
    wb.save(buf)
    return buf.getvalue()


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip()


def _date_cell(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.date()
    return _text(value) or None


def _row_input(cells: dict[str, Any], orgs: dict[str, str]) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """The ItemCreate input of one row, and the errors found before validation (field, message)."""
    errors: list[tuple[str, str]] = []

    def org(name: str, field: str) -> str:
        code = orgs.get(name)
        if code is None:
            errors.append((field, f"unknown unit {name!r}"))
        return code or "unknown"

    lead = _text(cells["lead_org"])
    co_names = [n.strip() for n in _text(cells["co_orgs"]).replace("，", "、").replace(",", "、").split("、")
                if n.strip()]
    public = _text(cells["public"]).lower()
    if public not in ("", "是", "否", "yes", "no", "true", "false", "1", "0"):
        errors.append(("public", "must be 是 or 否"))
    data: dict[str, Any] = {
        "task": (_text(cells["task"]).split() or [None])[-1],  # 21 or the export's "(二十一) 21"
        "title": _text(cells["title"]), "deliverable": _text(cells["deliverable"]),
        "lead_org": org(lead, "lead_org") if lead else None,
        "co_orgs": [org(n, "co_orgs") for n in co_names],
        "start_date": _date_cell(cells["start_date"]), "due_date": _date_cell(cells["due_date"]),
        "public": public in ("是", "yes", "true", "1"),
        "kpis": [],
    }
    if any(_text(cells[f]) for f in _KPI_FIELDS):
        data["kpis"] = [{"name": _text(cells["kpi_name"]), "unit": _text(cells["kpi_unit"]),
                         "baseline": cells["kpi_baseline"] if cells["kpi_baseline"] not in (None, "") else 0,
                         "target": cells["kpi_target"]}]
    return data, errors


def _field_of(loc: tuple[Any, ...]) -> str:
    if not loc:
        return "title"
    if loc[0] == "kpis":
        return {"name": "kpi_name", "unit": "kpi_unit", "baseline": "kpi_baseline",
                "target": "kpi_target"}.get(str(loc[-1]), "kpi_target")
    return str(loc[0])


def import_xlsx(session: Session, actor: Actor, data: bytes, *, dry_run: bool = False) -> list[PlanWorkItem]:
    """Create work items from the filled-in template; all rows or none (422 lists every error)."""
    require_office(session, actor)
    if len(data) > IMPORT_MAX_BYTES:
        raise Unprocessable(f"the workbook is larger than {IMPORT_MAX_BYTES} bytes",
                            errors=[{"field": "file", "message": "too large"}])
    try:
        wb = load_workbook(BytesIO(data), read_only=True, data_only=True)
    except (BadZipFile, KeyError, ValueError, OSError) as exc:
        raise Unprocessable("the file is not an XLSX workbook",
                            errors=[{"field": "file", "message": str(exc)[:200]}]) from None
    ws = wb.worksheets[0]
    rows = ws.iter_rows(values_only=True)
    header = [_text(h) for h in next(rows, ())]
    expected = [h for h, _f in IMPORT_COLUMNS]
    if header[:len(expected)] != expected:
        raise Unprocessable("the first row must be the template's headers",
                            errors=[{"row": 1, "column": get_column_letter(i + 1), "field": "header",
                                     "message": f"expected {h!r}"}
                                    for i, h in enumerate(expected) if i >= len(header) or header[i] != h])
    orgs: dict[str, str] = {}
    for o in identity.list_organisations(session):
        orgs[o.name_zh] = o.code
        orgs[o.full_name_zh] = o.code
        orgs[o.code] = o.code
    valid: list[ItemCreate] = []
    errors: list[dict[str, Any]] = []
    known_tasks = set(session.scalars(select(PlanTask.number)))
    for n, values in enumerate(rows, start=2):
        if n - 1 > IMPORT_MAX_ROWS:
            raise Unprocessable(f"at most {IMPORT_MAX_ROWS} rows per import",
                                errors=[{"row": n, "field": "file", "message": "too many rows"}])
        values = tuple(values) + (None,) * (len(IMPORT_COLUMNS) - len(values))
        if all(v in (None, "") for v in values[:len(IMPORT_COLUMNS)]):
            continue
        cells = {f: values[i] for i, (_h, f) in enumerate(IMPORT_COLUMNS)}
        raw, row_errors = _row_input(cells, orgs)
        for field, message in row_errors:
            errors.append({"row": n, "column": _COLUMN_OF[field], "field": field, "message": message})
        try:
            item = ItemCreate.model_validate(raw)
        except ValidationError as exc:
            for e in exc.errors(include_url=False):
                field = _field_of(tuple(e["loc"]))
                errors.append({"row": n, "column": _COLUMN_OF.get(field, "A"), "field": field,
                               "message": e["msg"]})
            continue
        if item.task not in known_tasks:
            errors.append({"row": n, "column": "A", "field": "task", "message": f"no task {item.task}"})
        if not row_errors:
            valid.append(item)
    if errors:
        raise Unprocessable(f"{len({e['row'] for e in errors})} rows have errors; nothing was imported",
                            errors=errors)
    if not valid:
        raise Unprocessable("the workbook has no rows to import", errors=[{"row": 2, "field": "file",
                                                                           "message": "no data rows"}])
    if dry_run:
        return []
    created = [create_item(session, actor, item, _checked=True) for item in valid]
    audit.append(session, actor, "plan.items_imported", "plan", "xlsx", {"codes": [i.code for i in created]})
    return created


def progress(session: Session, day: date, warn: int, *, area: int | None = None) -> dict[str, Any]:
    """The public progress view: per area and task, the items the plan office marked public."""
    items = [i for i in list_items(session, Access(office=False, org=None), area=area) if i.parent_id is None]
    latest = latest_reports(session, [i.id for i in items], public_only=True)
    orgs = {o.code: (o.name_zh, o.name_en) for o in identity.list_organisations(session)}
    areas = {a.number: a for a in session.scalars(select(PlanArea))}
    out: dict[int, dict[str, Any]] = {}
    for i in items:
        t = i.task
        a = areas[t.area_number]
        area_row = out.setdefault(a.number, {"area": a.number, "numeral": a.numeral,
                                             "title": {"zh": a.title_zh, "en": a.title_en}, "tasks": {}})
        task_row = area_row["tasks"].setdefault(t.number, {"task": t.number, "numeral": t.numeral,
                                                           "title": {"zh": t.title_zh, "en": t.title_en},
                                                           "work_items": []})
        r = latest.get(i.id)
        kpis = [{"name": k.name, "unit": k.unit, "baseline": k.baseline, "target": k.target, "current": k.current,
                 "progress": k.progress} for k in i.kpis]
        name = orgs.get(i.lead_org, (i.lead_org, i.lead_org))
        task_row["work_items"].append({
            "id": i.id, "code": i.code, "title": i.title, "lead_org": i.lead_org,
            "lead_name": {"zh": name[0], "en": name[1]}, "status": i.status, "light": light(i, day, warn),
            "start_date": i.start_date, "due_date": i.due_date, "completed_on": i.completed_on, "kpis": kpis,
            "latest_report": {"date": r.created_at.date(), "text": r.text} if r else None})
    areas_out = []
    for n in sorted(out):
        a = out[n]
        a["tasks"] = [a["tasks"][k] for k in sorted(a["tasks"])]
        areas_out.append(a)
    return {"as_of": day, "areas": areas_out}

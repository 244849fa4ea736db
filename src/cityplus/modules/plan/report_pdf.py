"""The quarterly supervision report (督查督办季度报告) as PDF (reportlab): totals, charts, a table per area.

Chinese text uses reportlab's built-in CID font STSong-Light (Adobe's Chinese font pack, rendered by the
viewer), so no font file is shipped. Paragraphs take reportlab's mini-markup, so every text from users is escaped.
"""

from __future__ import annotations

from datetime import date, timedelta
from io import BytesIO
from typing import Any
from xml.sax.saxutils import escape

from reportlab.graphics.charts.barcharts import VerticalBarChart
from reportlab.graphics.charts.legends import Legend
from reportlab.graphics.shapes import Drawing, String
from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.cidfonts import UnicodeCIDFont
from reportlab.platypus import PageBreak, Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle
from sqlalchemy.orm import Session

from cityplus.core.identity import service as identity
from cityplus.modules.plan.dashboards import dashboard
from cityplus.modules.plan.exports import LIGHT_ZH, STATUS_ZH
from cityplus.modules.plan.supervision import Access, latest_reports, light, list_items

FONT = "STSong-Light"
LIGHT_COLOURS = {"green": colors.HexColor("#2e7d32"), "yellow": colors.HexColor("#f9a825"),
                 "red": colors.HexColor("#c62828"), "done": colors.HexColor("#607d8b")}


def quarter_end(year: int, quarter: int) -> date:
    """The last day of a quarter."""
    first_of_next = date(year + (quarter == 4), quarter % 4 * 3 + 1, 1)
    return first_of_next - timedelta(days=1)


def _styles() -> dict[str, ParagraphStyle]:
    if FONT not in pdfmetrics.getRegisteredFontNames():
        pdfmetrics.registerFont(UnicodeCIDFont(FONT))
    return {
        "title": ParagraphStyle("title", fontName=FONT, fontSize=16, leading=22, spaceAfter=6),
        "h2": ParagraphStyle("h2", fontName=FONT, fontSize=12, leading=17, spaceBefore=8, spaceAfter=4),
        "body": ParagraphStyle("body", fontName=FONT, fontSize=9, leading=13),
        "cell": ParagraphStyle("cell", fontName=FONT, fontSize=7.5, leading=10),
    }


def _lights_chart(areas: list[dict[str, Any]]) -> Drawing:
    """Stacked bars: items by light in each area."""
    d = Drawing(170 * mm, 70 * mm)
    chart = VerticalBarChart()
    chart.x, chart.y, chart.width, chart.height = 12 * mm, 12 * mm, 120 * mm, 50 * mm
    keys = ["done", "green", "yellow", "red"]
    chart.data = [[a["lights"][k] for a in areas] or [0] for k in keys]
    chart.categoryAxis.categoryNames = [a["numeral"] for a in areas] or ["-"]
    chart.categoryAxis.labels.fontName = FONT
    chart.categoryAxis.style = "stacked"
    chart.valueAxis.valueMin = 0
    for i, k in enumerate(keys):
        chart.bars[i].fillColor = LIGHT_COLOURS[k]
    legend = Legend()
    legend.x, legend.y = 140 * mm, 55 * mm
    legend.fontName = FONT
    legend.colorNamePairs = [(LIGHT_COLOURS[k], LIGHT_ZH[k]) for k in keys]
    d.add(chart)
    d.add(legend)
    d.add(String(12 * mm, 66 * mm, "各领域工作事项预警分布 Items by light per area", fontName=FONT, fontSize=9))
    return d


def _trend_chart(points: list[dict[str, Any]]) -> Drawing:
    """Bars: completion rate by month over the plan period."""
    d = Drawing(170 * mm, 60 * mm)
    chart = VerticalBarChart()
    chart.x, chart.y, chart.width, chart.height = 12 * mm, 12 * mm, 150 * mm, 40 * mm
    chart.data = [[round(100 * (p["completion_rate"] or 0), 1) for p in points] or [0]]
    chart.categoryAxis.categoryNames = [p["month"][2:] for p in points] or ["-"]
    chart.categoryAxis.labels.fontSize = 5
    chart.categoryAxis.labels.angle = 90
    chart.categoryAxis.labels.dy = -8
    chart.valueAxis.valueMin, chart.valueAxis.valueMax = 0, 100
    chart.bars[0].fillColor = LIGHT_COLOURS["done"]
    d.add(chart)
    d.add(String(12 * mm, 56 * mm, "逐月完成率（%）Completion rate by month (%)", fontName=FONT, fontSize=9))
    return d


def quarterly(session: Session, year: int, quarter: int, warn: int) -> bytes:
    """The report for one quarter, as of the quarter's last day."""
    day = quarter_end(year, quarter)
    st = _styles()
    office = Access(office=True, org=None)
    board = dashboard(session, office, day, warn)
    orgs = {o.code: o.name_zh for o in identity.list_organisations(session)}
    items = [i for i in list_items(session, office) if i.parent_id is None]
    latest = latest_reports(session, [i.id for i in items])
    t = board["totals"]
    story: list[Any] = [
        Paragraph(f"成都市“互联网+”行动计划督查督办季度报告 {year}年第{quarter}季度", st["title"]),
        Paragraph(f"Chengdu &quot;Internet+&quot; action plan — quarterly supervision report {year} Q{quarter} "
                  f"(as of {day.isoformat()})", st["body"]),
        Spacer(1, 4 * mm),
        Paragraph(f"工作事项 Items: {t['total']}　已销号 Closed: {t['closed']}　逾期 Overdue: {t['overdue']}　"
                  f"完成率 Completion rate: {_pct(t['completion_rate'])}　按时率 On-time rate: "
                  f"{_pct(t['on_time_rate'])}", st["body"]),
        Spacer(1, 4 * mm),
        _lights_chart(board["areas"]),
        _trend_chart(board["trend"]),
    ]
    for a in board["areas"]:
        story.append(PageBreak())
        story.append(Paragraph(escape(f"{a['numeral']}、{a['title']['zh']} {a['title']['en']}"), st["h2"]))
        story.append(Paragraph(f"事项 {a['total']} · 已销号 {a['closed']} · 逾期 {a['overdue']} · "
                               f"完成率 {_pct(a['completion_rate'])}", st["body"]))
        rows = [[Paragraph(h, st["cell"]) for h in ("编号 Code", "事项 Item", "牵头单位 Lead", "时限 Due",
                                                    "状态 Status", "预警 Light", "最新进展 Latest report")]]
        styles = []
        area_items = [i for i in items if i.task.area_number == a["area"] and i.created_at.date() <= day]
        for n, i in enumerate(area_items, start=1):
            lamp = light(i, day, warn)
            r = latest.get(i.id)
            status = "closed" if lamp == "done" else i.status
            latest_text = r.text[:80] if r and r.created_at.date() <= day else ""
            rows.append([Paragraph(escape(i.code), st["cell"]), Paragraph(escape(i.title), st["cell"]),
                         Paragraph(escape(orgs.get(i.lead_org, i.lead_org)), st["cell"]),
                         Paragraph(i.due_date.isoformat(), st["cell"]),
                         Paragraph(STATUS_ZH[status], st["cell"]), Paragraph(LIGHT_ZH[lamp], st["cell"]),
                         Paragraph(escape(latest_text), st["cell"])])
            styles.append(("BACKGROUND", (5, n), (5, n), LIGHT_COLOURS[lamp].clone(alpha=0.25)))
        table = Table(rows, colWidths=[14 * mm, 45 * mm, 22 * mm, 18 * mm, 16 * mm, 13 * mm, 52 * mm],
                      repeatRows=1)
        table.setStyle(TableStyle([("GRID", (0, 0), (-1, -1), 0.3, colors.grey),
                                   ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#eceff1")),
                                   ("VALIGN", (0, 0), (-1, -1), "TOP"), *styles]))
        story.append(table)
    buf = BytesIO()
    doc = SimpleDocTemplate(buf, pagesize=A4, leftMargin=12 * mm, rightMargin=12 * mm, topMargin=14 * mm,
                            bottomMargin=14 * mm, title=f"CityPlus plan supervision {year} Q{quarter}",
                            author="CityPlus")
    doc.build(story)
    return buf.getvalue()


def _pct(v: float | None) -> str:
    return "—" if v is None else f"{100 * v:.1f}%"

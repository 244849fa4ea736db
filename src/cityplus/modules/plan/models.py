"""Tables of the plan module: areas (领域), tasks (任务), responsible units (责任单位) and supervision (督查督办)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import Boolean, Date, Float, ForeignKey, Integer, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from cityplus.core.db import Base, JSONType, UTCDateTime


class PlanArea(Base):
    """One of the plan's 12 areas, e.g. 六、“互联网+”政务服务."""

    __tablename__ = "plan_areas"

    number: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    numeral: Mapped[str] = mapped_column(String(8))
    key: Mapped[str] = mapped_column(String(32), unique=True)
    title_zh: Mapped[str] = mapped_column(String(64))
    title_en: Mapped[str] = mapped_column(String(128))
    intro_zh: Mapped[str] = mapped_column(Text)
    intro_en: Mapped[str] = mapped_column(Text)
    lead_units: Mapped[list[str]] = mapped_column(JSONType)  # short Chinese names, in the plan's order

    tasks: Mapped[list[PlanTask]] = relationship(back_populates="area", order_by="PlanTask.number")


class PlanTask(Base):
    """One of the 46 numbered tasks, e.g. (二十一) the open-data portal."""

    __tablename__ = "plan_tasks"

    number: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    numeral: Mapped[str] = mapped_column(String(8))
    area_number: Mapped[int] = mapped_column(ForeignKey("plan_areas.number"), index=True)
    title_zh: Mapped[str] = mapped_column(String(64))
    title_en: Mapped[str] = mapped_column(String(128))
    text_zh: Mapped[str] = mapped_column(Text)
    text_en: Mapped[str] = mapped_column(Text)
    platforms: Mapped[list[dict[str, Any]]] = mapped_column(JSONType)
    units_note: Mapped[dict[str, str] | None] = mapped_column(JSONType, nullable=True)

    area: Mapped[PlanArea] = relationship(back_populates="tasks")
    units: Mapped[list[PlanTaskUnit]] = relationship(
        order_by="PlanTaskUnit.position", cascade="all, delete-orphan", lazy="selectin")


class PlanTaskUnit(Base):
    """A unit responsible for a task; position 1 is the lead (牵头责任单位)."""

    __tablename__ = "plan_task_units"

    task_number: Mapped[int] = mapped_column(ForeignKey("plan_tasks.number", ondelete="CASCADE"),
                                             primary_key=True)
    position: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    org_code: Mapped[str] = mapped_column(String(32), index=True)
    name_zh: Mapped[str] = mapped_column(String(64))

    @property
    def is_lead(self) -> bool:
        return self.position == 1


# --- supervision (督查督办): work items under the tasks, their reports, extensions and timeline -------------------


class PlanWorkItem(Base):
    """A dated work item (工作事项/节点) the plan office assigns under a task to a lead unit and co-units."""

    __tablename__ = "plan_work_items"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)  # plan numbering: 21.2, 21.2.1 for a sub-item
    task_number: Mapped[int] = mapped_column(ForeignKey("plan_tasks.number"), index=True)
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("plan_work_items.id"), nullable=True, index=True)
    title: Mapped[str] = mapped_column(String(200))
    deliverable: Mapped[str] = mapped_column(Text, default="")
    lead_org: Mapped[str] = mapped_column(String(32), index=True)
    start_date: Mapped[date | None] = mapped_column(Date, nullable=True)
    due_date: Mapped[date] = mapped_column(Date, index=True)
    original_due_date: Mapped[date] = mapped_column(Date)
    status: Mapped[str] = mapped_column(String(24), index=True)
    public: Mapped[bool] = mapped_column(Boolean, default=False)
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    completed_on: Mapped[date | None] = mapped_column(Date, nullable=True)  # completion reported (then closed)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    version: Mapped[int] = mapped_column(Integer)

    __mapper_args__ = {"version_id_col": version}

    task: Mapped[PlanTask] = relationship(lazy="joined")
    co_units: Mapped[list[PlanItemCoUnit]] = relationship(
        order_by="PlanItemCoUnit.position", cascade="all, delete-orphan", lazy="selectin")
    kpis: Mapped[list[PlanItemKpi]] = relationship(
        order_by="PlanItemKpi.position", cascade="all, delete-orphan", lazy="selectin")

    @property
    def co_orgs(self) -> list[str]:
        return [u.org_code for u in self.co_units]


class PlanItemCoUnit(Base):
    """A co-unit (配合单位) of a work item: reports on it, cannot report completion."""

    __tablename__ = "plan_item_co_units"

    item_id: Mapped[int] = mapped_column(ForeignKey("plan_work_items.id", ondelete="CASCADE"), primary_key=True)
    org_code: Mapped[str] = mapped_column(String(32), primary_key=True, index=True)
    position: Mapped[int] = mapped_column(Integer)


class PlanItemKpi(Base):
    """A measurable target of a work item (指标): name, unit, baseline, target and the latest reported value."""

    __tablename__ = "plan_item_kpis"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("plan_work_items.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(100))
    unit: Mapped[str] = mapped_column(String(32))
    baseline: Mapped[float] = mapped_column(Float)
    target: Mapped[float] = mapped_column(Float)
    current: Mapped[float | None] = mapped_column(Float, nullable=True)

    @property
    def progress(self) -> float | None:
        """Share of the way from baseline to target reached, 0–1 (None before any value)."""
        if self.current is None or self.target == self.baseline:
            return None
        return max(0.0, min(1.0, (self.current - self.baseline) / (self.target - self.baseline)))


class PlanItemReport(Base):
    """A progress or completion report (进展报告 / 完成报告) by a lead unit or co-unit."""

    __tablename__ = "plan_item_reports"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("plan_work_items.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # progress | completion
    org_code: Mapped[str] = mapped_column(String(32))
    author: Mapped[str] = mapped_column(String(64))
    text: Mapped[str] = mapped_column(Text)
    kpi_values: Mapped[list[dict[str, Any]]] = mapped_column(JSONType)  # [{"kpi": id, "value": number}]
    public: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)

    attachments: Mapped[list[PlanReportAttachment]] = relationship(
        order_by="PlanReportAttachment.id", cascade="all, delete-orphan", lazy="selectin")


class PlanReportAttachment(Base):
    """A file attached to a report (PDF, image, office document), size- and type-checked."""

    __tablename__ = "plan_report_attachments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    report_id: Mapped[int] = mapped_column(ForeignKey("plan_item_reports.id", ondelete="CASCADE"), index=True)
    filename: Mapped[str] = mapped_column(String(200))
    content_type: Mapped[str] = mapped_column(String(100))
    size: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    data: Mapped[bytes] = mapped_column(LargeBinary, deferred=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class PlanItemExtension(Base):
    """A request to move a work item's due date (延期申请); the date changes only when the plan office approves."""

    __tablename__ = "plan_item_extensions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("plan_work_items.id", ondelete="CASCADE"), index=True)
    status: Mapped[str] = mapped_column(String(16))  # pending | approved | rejected
    reason: Mapped[str] = mapped_column(Text)
    old_due_date: Mapped[date] = mapped_column(Date)
    new_due_date: Mapped[date] = mapped_column(Date)
    requested_by: Mapped[str] = mapped_column(String(64))
    org_code: Mapped[str] = mapped_column(String(32))
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime)
    decided_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    decision_note: Mapped[str | None] = mapped_column(Text, nullable=True)


class PlanItemEvent(Base):
    """One entry of a work item's timeline: who moved it from which status to which, when, and why."""

    __tablename__ = "plan_item_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("plan_work_items.id", ondelete="CASCADE"), index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    actor: Mapped[str] = mapped_column(String(64))
    org_code: Mapped[str | None] = mapped_column(String(32), nullable=True)
    action: Mapped[str] = mapped_column(String(32))
    from_status: Mapped[str | None] = mapped_column(String(24), nullable=True)
    to_status: Mapped[str | None] = mapped_column(String(24), nullable=True)
    note: Mapped[str | None] = mapped_column(Text, nullable=True)


class PlanReminder(Base):
    """A reminder already sent, so the scheduled job sends each one once (item, kind, which due date / week)."""

    __tablename__ = "plan_reminders"
    __table_args__ = (UniqueConstraint("item_id", "kind", "key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("plan_work_items.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # due_soon | overdue
    key: Mapped[str] = mapped_column(String(32))
    sent_at: Mapped[datetime] = mapped_column(UTCDateTime)
    recipients: Mapped[int] = mapped_column(Integer)
    mails: Mapped[int] = mapped_column(Integer)

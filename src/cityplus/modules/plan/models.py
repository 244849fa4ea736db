"""Tables of the plan module: areas (领域), tasks (任务) and their responsible units (责任单位)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from cityplus.core.db import Base, JSONType


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

"""Environment pages: the AQI calculator (a plain GET form, works without JavaScript) and the network's current AQI."""

from __future__ import annotations

import contextlib
import json
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Form, Path, Request
from fastapi.responses import HTMLResponse, Response

from cityplus.api.deps import Ctx, DbSession, Principal
from cityplus.core.errors import Conflict, Forbidden, Unprocessable
from cityplus.modules.context import service as context_service
from cityplus.modules.environment import aqi, service, weather
from cityplus.web.i18n import CITY_TZ, N_
from cityplus.web.render import Msg, PageScoped, PublicPage, redirect, render

FIELD_LABELS = {
    "so2": N_("SO₂ (µg/m³)"), "no2": N_("NO₂ (µg/m³)"), "co": N_("CO (mg/m³)"), "o3": N_("O₃, 1-hour (µg/m³)"),
    "o3_8h": N_("O₃, 8-hour (µg/m³)"), "pm10": N_("PM₁₀ (µg/m³)"), "pm25": N_("PM₂.₅ (µg/m³)"),
}
NOTES = {
    "so2_1h_above_800": N_("SO₂ 1-hour mean above 800 µg/m³: the edition’s footnote applies."),
    "o3_8h_above_800": N_("O₃ 8-hour mean above 800 µg/m³: the edition’s footnote applies."),
    "above_scale": N_("Above the highest breakpoint: the index is capped at 500."),
}


NOTICES = {"warning_issued": N_("The warning signal has been issued and published."),
           "warning_lifted": N_("The warning signal has been lifted.")}
WARNING_MESSAGES = {
    "signal": N_("Choose a signal and a level it has (high temperature has no blue level)."),
    "area": N_("Enter the area as a GeoJSON polygon within Chengdu: longitude first, each ring closed."),
    "valid_from": N_("Enter a start no more than an hour ago, in Chengdu time."),
    "valid_to": N_("Enter an end after the start and in the future, at most 72 hours after the start."),
    "area_name": N_("Name the area."),
    "guidance_zh": N_("Enter the defence guidance in Chinese."),
}
# The whole municipality, roughly: a starting point forecasters narrow down.
CITY_AREA = {"type": "Polygon", "coordinates": [[[102.9, 30.1], [104.9, 30.1], [104.9, 31.4], [102.9, 31.4],
                                                 [102.9, 30.1]]]}


def _message(exc: aqi.AqiInputError) -> Msg:
    if exc.field == "pollutants":
        return Msg(N_("Enter at least one concentration."))
    if exc.field == "o3" and "8-hour" in exc.message:
        return Msg(N_("Under HJ 633—2026 daily reports assess ozone by its 8-hour value; leave the 1-hour field "
                      "empty."))
    if exc.field in ("edition", "period"):
        return Msg(N_("Choose one of the options offered."))
    return Msg(N_("Enter a concentration of zero or more, or leave the field empty."))


def router() -> APIRouter:
    """The environment module's portal pages (public, like its read API)."""
    r = APIRouter(prefix="/environment", include_in_schema=False)

    @r.get("/aqi", response_class=HTMLResponse)
    def aqi_calculator(request: Request, _: PublicPage) -> HTMLResponse:
        """The AQI calculator: the form, and the result when concentrations were submitted."""
        q = request.query_params
        form = {k: q.get(k, "")[:32] for k in ("edition", "period", *aqi.POLLUTANTS)}
        form["period"] = form["period"] or "hourly"
        errors: dict[str, Msg] = {}
        result = choice = None
        submitted = any(form[p].strip() for p in aqi.POLLUTANTS) or "period" in q
        status = 200
        if submitted:
            values: dict[str, float | None] = {}
            for p in aqi.POLLUTANTS:
                try:
                    values[p] = service.parse_concentration(p, form[p])
                except aqi.AqiInputError as exc:
                    errors[p] = _message(exc)
            if not errors:
                try:
                    choice, result = service.calculate(values, edition=form["edition"] or None,
                                                       period=form["period"])
                except Unprocessable as exc:
                    field = exc.errors[0]["field"] if exc.errors else "pollutants"
                    errors["so2" if field == "pollutants" else field] = _message(
                        aqi.AqiInputError(field, exc.errors[0]["message"] if exc.errors else ""))
            if errors:
                status = 422
        return render(request, "environment/aqi.html", {
            "form": form, "errors": errors, "result": result, "choice": choice, "labels": FIELD_LABELS,
            "notes": NOTES, "pollutants": aqi.POLLUTANTS, "categories": aqi.CATEGORIES}, status=status)

    @r.get("/air", response_class=HTMLResponse)
    def air_now(request: Request, principal: PublicPage, session: DbSession, ctx: Ctx,
                notice: str | None = None) -> HTMLResponse:
        """Weather warning signals in force, and the real-time AQI of the city, its districts and its stations."""
        active = context_service.core_context(ctx)
        network = service.cached_network(session, active)
        return render(request, "environment/air.html", {
            "network": network, "labels": FIELD_LABELS, "warnings": service.list_warnings(session, active),
            "notice": NOTICES.get(notice or ""), "can_warn": _can_warn(principal)})

    @r.get("/air/stations/{station_id}", response_class=HTMLResponse)
    def station_page(request: Request, station_id: Annotated[str, Path(max_length=256)], _: PublicPage,
                     session: DbSession, ctx: Ctx) -> HTMLResponse:
        """One station: its current AQI, and its last 24 hours and 30 days as tables (charts drawn from the JSON
        of /api/v1/environment/air/stations/{id}/history when JavaScript runs)."""
        hist = service.station_history(session, context_service.core_context(ctx), station_id)
        return render(request, "environment/station.html", {
            "hist": hist, "history_url": f"/api/v1/environment/air/stations/{quote(station_id, safe='')}/history",
            "columns": ("pm25", "pm10", "o3", "o3_8h", "no2", "so2", "co")})

    @r.get("/warnings/new", response_class=HTMLResponse)
    def new_warning(request: Request, principal: PageScoped("environment.warn")) -> HTMLResponse:
        """The form with which 市气象局 staff issue a weather warning signal."""
        weather.may_issue(principal.actor)
        now = datetime.now(CITY_TZ).replace(second=0, microsecond=0)
        form = {"signal": "rainstorm", "level": "blue", "area_name": "", "area": json.dumps(CITY_AREA),
                "valid_from": now.strftime("%Y-%m-%dT%H:%M"),
                "valid_to": (now + timedelta(hours=6)).strftime("%Y-%m-%dT%H:%M"), "guidance_zh": "",
                "guidance_en": ""}
        return _warning_form(request, form, {})

    @r.post("/warnings")
    def issue_warning(request: Request, principal: PageScoped("environment.warn"), session: DbSession, ctx: Ctx,
                      signal: Annotated[str, Form(max_length=32)] = "", level: Annotated[str, Form(max_length=16)] = "",
                      area_name: Annotated[str, Form(max_length=200)] = "",
                      area: Annotated[str, Form(max_length=200_000)] = "",
                      valid_from: Annotated[str, Form(max_length=32)] = "",
                      valid_to: Annotated[str, Form(max_length=32)] = "",
                      guidance_zh: Annotated[str, Form(max_length=2000)] = "",
                      guidance_en: Annotated[str, Form(max_length=2000)] = "") -> Response:
        """Issue a warning signal from the form; back to the air-quality page, where it shows."""
        weather.may_issue(principal.actor)
        form = {"signal": signal, "level": level, "area_name": area_name, "area": area, "valid_from": valid_from,
                "valid_to": valid_to, "guidance_zh": guidance_zh, "guidance_en": guidance_en}
        errors: dict[str, Msg] = {}
        parsed: dict[str, Any] = {}
        try:
            parsed["area"] = json.loads(area)
            if not isinstance(parsed["area"], dict):
                raise ValueError("not an object")
        except ValueError:
            errors["area"] = Msg(WARNING_MESSAGES["area"])
        for name, text in (("valid_from", valid_from), ("valid_to", valid_to)):
            try:
                parsed[name] = _local_time(text)
            except ValueError:
                errors[name] = Msg(WARNING_MESSAGES[name])
        if not errors:
            spec = service.WarningSpec(signal=signal, level=level, area_name=area_name, area=parsed["area"],
                                       valid_from=parsed["valid_from"], valid_to=parsed["valid_to"],
                                       guidance_zh=guidance_zh, guidance_en=guidance_en.strip() or None)
            try:
                with session.begin_nested():
                    service.issue_warning(session, context_service.core_context(ctx), principal.actor, spec)
            except Unprocessable as exc:
                field = str(exc.errors[0]["field"]).split(".")[0] if exc.errors else "signal"
                field = "signal" if field == "level" else field
                errors[field] = Msg(WARNING_MESSAGES.get(field, WARNING_MESSAGES["signal"]))
        if errors:
            return _warning_form(request, form, errors, status=422)
        return redirect("/environment/air", notice="warning_issued")

    @r.post("/warnings/lift")
    def lift_warning(request: Request, principal: PageScoped("environment.warn"), session: DbSession, ctx: Ctx,
                     warning_id: Annotated[str, Form(max_length=256)] = "") -> Response:
        """Lift a warning signal from the air-quality page."""
        with contextlib.suppress(Conflict):  # lifted meanwhile by someone else: the page shows it gone either way
            service.lift_warning(session, context_service.core_context(ctx), principal.actor, warning_id)
        return redirect("/environment/air", notice="warning_lifted")

    return r


def _can_warn(principal: Principal | None) -> bool:
    if principal is None or not principal.has("environment.warn"):
        return False
    try:
        weather.may_issue(principal.actor)
    except Forbidden:
        return False
    return True


def _local_time(text: str) -> datetime:
    """A datetime-local field (Chengdu time, no zone) as an aware time; ValueError when it is not one."""
    value = datetime.strptime(text.strip(), "%Y-%m-%dT%H:%M")
    return value.replace(tzinfo=CITY_TZ).astimezone(UTC)


def _warning_form(request: Request, form: dict[str, str], errors: dict[str, Msg], *, status: int = 200
                  ) -> HTMLResponse:
    return render(request, "environment/warning_new.html", {
        "form": form, "errors": errors, "signals": weather.SIGNALS}, status=status)

"""Environment pages: the AQI calculator (a plain GET form, works without JavaScript) and the network's current AQI."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from cityplus.api.deps import Ctx, DbSession
from cityplus.core.errors import Unprocessable
from cityplus.modules.context import service as context_service
from cityplus.modules.environment import aqi, service
from cityplus.web.i18n import N_
from cityplus.web.render import Msg, PublicPage, render

FIELD_LABELS = {
    "so2": N_("SO₂ (µg/m³)"), "no2": N_("NO₂ (µg/m³)"), "co": N_("CO (mg/m³)"), "o3": N_("O₃, 1-hour (µg/m³)"),
    "o3_8h": N_("O₃, 8-hour (µg/m³)"), "pm10": N_("PM₁₀ (µg/m³)"), "pm25": N_("PM₂.₅ (µg/m³)"),
}
NOTES = {
    "so2_1h_above_800": N_("SO₂ 1-hour mean above 800 µg/m³: the edition’s footnote applies."),
    "o3_8h_above_800": N_("O₃ 8-hour mean above 800 µg/m³: the edition’s footnote applies."),
    "above_scale": N_("Above the highest breakpoint: the index is capped at 500."),
}


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
    def air_now(request: Request, _: PublicPage, session: DbSession, ctx: Ctx) -> HTMLResponse:
        """Weather warning signals in force, and the real-time AQI of the city, its districts and its stations."""
        active = context_service.core_context(ctx)
        network = service.network_aqi(session, active)
        return render(request, "environment/air.html", {"network": network, "labels": FIELD_LABELS,
                                                        "warnings": service.list_warnings(session, active)})

    return r

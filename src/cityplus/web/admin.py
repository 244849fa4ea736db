"""Administration pages: user management (用户管理) and the audit log (审计日志)."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.orm import Session

from cityplus.api.deps import DbSession, Principal
from cityplus.core import audit
from cityplus.core.errors import Conflict, DomainError
from cityplus.core.identity import service as identity
from cityplus.core.identity.models import User
from cityplus.core.modules import ROLES
from cityplus.web import labels
from cityplus.web.account import NAME_MAX, valid_email
from cityplus.web.i18n import CITY_TZ, N_
from cityplus.web.render import Msg, PageScoped, redirect, render

USERS_PER_PAGE = 50
AUDIT_PER_PAGE = 50
AUDIT_FILTERS = ("actor", "org", "action", "object_type", "object_id")


def _clip(value: str | None, n: int) -> str:
    return (value or "").strip()[:n]


def _visible_org(principal: Principal, requested: str) -> str:
    """Department administrators only ever see their own organisation's users."""
    if principal.user.role == "platform_admin":
        return requested
    return principal.user.org.code if principal.user.org else "-"


def _user_errors(session: Session, *, username: str | None, password: str | None, role: str, org: str,
                 email: str, display_name: str) -> dict[str, Msg]:
    """Check a user form the way the identity service will, with messages the reader understands."""
    errors: dict[str, Msg] = {}
    if username is not None and not identity.USERNAME_RE.match(username):
        errors["username"] = Msg(N_("Use 3 to 64 letters, digits, '.', '_' or '-', starting with a letter or "
                                    "digit."))
    if password is not None and len(password) < identity.MIN_PASSWORD:
        errors["password"] = Msg(N_("Use at least %(min)s characters."), {"min": identity.MIN_PASSWORD})
    if role not in ROLES:
        errors["role"] = Msg(N_("Choose a role."))
    if org:
        try:
            identity.get_organisation(session, org)
        except DomainError:
            errors["org"] = Msg(N_("Choose an organisation from the list."))
    elif role in identity.ORG_ROLES:
        errors["org"] = Msg(N_("Department roles need an organisation."))
    if email and not valid_email(email):
        errors["email"] = Msg(N_("Enter an e-mail address like name@example.com."))
    if len(display_name) > NAME_MAX:
        errors["display_name"] = Msg(N_("Enter a name of 1 to %(max)s characters."), {"max": NAME_MAX})
    return errors


def _day_start(value: str) -> datetime | None:
    """Midnight (Chengdu time) starting a yyyy-mm-dd day; None when empty; ValueError when malformed."""
    if not value:
        return None
    return datetime.combine(date.fromisoformat(value), time(), tzinfo=CITY_TZ)


def router() -> APIRouter:
    """User management and audit log pages."""
    r = APIRouter(prefix="/admin", include_in_schema=False)

    # --- users ------------------------------------------------------------------------------

    @r.get("/users", response_class=HTMLResponse)
    def users(request: Request, principal: PageScoped("users.read"), session: DbSession,
              org: str | None = None, role: str | None = None, q: str | None = None, offset: str = "0",
              notice: str | None = None) -> HTMLResponse:
        """Users, filterable by organisation, role and name."""
        filters = {"org": _visible_org(principal, _clip(org, 32)), "role": _clip(role, 32), "q": _clip(q, 64)}
        start = min(int(offset), 1_000_000) if offset.isdigit() else 0  # a bad value is page 1, not an error
        rows, total = identity.list_users(session, org_code=filters["org"] or None, role=filters["role"] or None,
                                          q=filters["q"] or None, limit=USERS_PER_PAGE, offset=start)
        query = {k: v for k, v in filters.items() if v}
        pages = {
            "prev": urlencode({**query, "offset": max(0, start - USERS_PER_PAGE)}) if start else None,
            "next": urlencode({**query, "offset": start + USERS_PER_PAGE}) if start + USERS_PER_PAGE < total else None,
        }
        orgs = identity.list_organisations(session) if principal.user.role == "platform_admin" else []
        return render(request, "admin/users.html", {
            "users": rows, "total": total, "filters": filters, "orgs": orgs, "roles": ROLES,
            "pages": pages, "can_manage": principal.has("users.manage"), "notice": labels.notice(notice)})

    def new_user_page(request: Request, session: Session, *, form: dict[str, str] | None = None,
                      errors: dict[str, Msg] | None = None, status: int = 200) -> HTMLResponse:
        """The create-user form, optionally with errors and the values entered."""
        blank = {"username": "", "display_name": "", "email": "", "role": "citizen", "org": ""}
        return render(request, "admin/user_new.html", {
            "form": form or blank, "errors": errors or {}, "roles": ROLES,
            "min_password": identity.MIN_PASSWORD,
            "orgs": identity.list_organisations(session)}, status=status)

    @r.get("/users/new", response_class=HTMLResponse)
    def new_user(request: Request, _: PageScoped("users.manage"), session: DbSession) -> HTMLResponse:
        """The form to create a user account."""
        return new_user_page(request, session)

    @r.post("/users")
    def create_user(request: Request, principal: PageScoped("users.manage"), session: DbSession,
                    username: Annotated[str, Form()] = "", password: Annotated[str, Form()] = "",
                    role: Annotated[str, Form()] = "", org: Annotated[str, Form()] = "",
                    display_name: Annotated[str, Form()] = "", email: Annotated[str, Form()] = "") -> Response:
        """Create a user account."""
        form = {"username": username.strip(), "display_name": display_name.strip(), "email": email.strip(),
                "role": role, "org": org}
        errors = _user_errors(session, username=form["username"], password=password, role=role, org=org,
                              email=form["email"], display_name=form["display_name"])
        if not errors:
            try:
                with session.begin_nested():
                    user = identity.create_user(session, principal.actor, username=form["username"],
                                                password=password, role=role, org_code=org or None,
                                                display_name=form["display_name"], email=form["email"] or None)
            except Conflict:
                errors["username"] = Msg(N_("This user name is already taken."))
            except DomainError:
                errors["username"] = Msg(N_("The account could not be created with these details."))
        if errors:
            return new_user_page(request, session, form=form, errors=errors, status=422)
        return redirect(f"/admin/users/{user.id}", notice="user_created")

    def user_page(request: Request, principal: Principal, session: Session, user: User, *,
                  form: dict[str, Any] | None = None, errors: dict[str, Msg] | None = None, status: int = 200,
                  notice: str | None = None) -> HTMLResponse:
        """One user's details and, for managers, the edit form."""
        current = {"role": user.role, "org": user.org.code if user.org else "", "is_active": user.is_active,
                   "display_name": user.display_name}
        return render(request, "admin/user_edit.html", {
            "user": user, "form": form or current, "errors": errors or {}, "roles": ROLES,
            "orgs": identity.list_organisations(session), "can_manage": principal.has("users.manage"),
            "is_self": user.id == principal.user.id, "notice": labels.notice(notice)}, status=status)

    @r.get("/users/{user_id:int}", response_class=HTMLResponse)
    def user_detail(user_id: int, request: Request, principal: PageScoped("users.read"), session: DbSession,
                    notice: str | None = None) -> HTMLResponse:
        """One user account; administrators with users.manage may edit it."""
        user = identity.get_user(session, user_id)
        identity.check_same_org(principal.user, user)
        return user_page(request, principal, session, user, notice=notice)

    @r.post("/users/{user_id:int}")
    def update_user(user_id: int, request: Request, principal: PageScoped("users.manage"), session: DbSession,
                    role: Annotated[str, Form()] = "", org: Annotated[str, Form()] = "",
                    display_name: Annotated[str, Form()] = "",
                    is_active: Annotated[str, Form()] = "") -> Response:
        """Change a user's role, organisation, display name or whether the account is active."""
        user = identity.get_user(session, user_id)
        identity.check_same_org(principal.user, user)
        active = is_active == "on"
        name = display_name.strip()
        form: dict[str, Any] = {"role": role, "org": org, "is_active": active, "display_name": name}
        errors = _user_errors(session, username=None, password=None, role=role, org=org, email="",
                              display_name=name)
        if user.id == principal.user.id and (role != user.role or not active):
            errors["role"] = Msg(N_("You cannot change the role of, or deactivate, your own account."))
        if not errors:
            try:
                with session.begin_nested():
                    identity.update_user(session, principal.actor, user, role=role, org_code=org or None,
                                         clear_org=not org, display_name=name or None,
                                         is_active=active)
            except DomainError:
                errors["org"] = Msg(N_("The account could not be updated with these details."))
        if errors:
            session.refresh(user)
            return user_page(request, principal, session, user, form=form, errors=errors, status=422)
        return redirect(f"/admin/users/{user.id}", notice="user_saved")

    # --- audit log --------------------------------------------------------------------------

    @r.get("/audit", response_class=HTMLResponse)
    def audit_log(request: Request, _: PageScoped("audit.read"), session: DbSession,
                  actor: str | None = None, org: str | None = None, action: str | None = None,
                  object_type: str | None = None, object_id: str | None = None, since: str | None = None,
                  until: str | None = None, before: str | None = None) -> HTMLResponse:
        """Audit entries, newest first, filterable, paged by sequence number (keyset)."""
        filters = {"actor": _clip(actor, 64), "org": _clip(org, 32), "action": _clip(action, 64),
                   "object_type": _clip(object_type, 64), "object_id": _clip(object_id, 128),
                   "since": _clip(since, 10), "until": _clip(until, 10)}
        errors: dict[str, Msg] = {}
        bounds: dict[str, datetime | None] = {}
        for key in ("since", "until"):
            try:
                bounds[key] = _day_start(filters[key])
            except ValueError:
                errors[key] = Msg(N_("Enter a date as year-month-day, e.g. 2016-05-31."))
                bounds[key] = None
        until_dt = bounds["until"] + timedelta(days=1) if bounds["until"] else None  # the whole last day
        cursor = int(before) if before and before.isdigit() else None
        rows, total = audit.query(session, **{k: filters[k] or None for k in AUDIT_FILTERS},
                                  since=bounds["since"], until=until_dt, before_seq=cursor, limit=AUDIT_PER_PAGE)
        query = {k: v for k, v in filters.items() if v}
        older = None
        if len(rows) == AUDIT_PER_PAGE and rows[-1].seq > 1:
            older = urlencode({**query, "before": rows[-1].seq})
        return render(request, "admin/audit.html", {
            "entries": rows, "total": total, "filters": filters, "errors": errors, "older": older,
            "newest": urlencode(query) if cursor else None, "paged": cursor is not None},
            status=422 if errors else 200)

    @r.get("/audit/verify", response_class=HTMLResponse)
    def audit_verify(request: Request, _: PageScoped("audit.read"), session: DbSession) -> HTMLResponse:
        """Recompute the audit log's hash chain and show whether it is intact."""
        return render(request, "admin/audit_verify.html", {"result": audit.verify(session)})

    return r

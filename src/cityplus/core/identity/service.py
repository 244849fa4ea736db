"""Identity and access service: users, organisations, API tokens, web sessions, sign-in throttling."""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from importlib.resources import files
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from cityplus.core import audit, events
from cityplus.core.audit import Actor
from cityplus.core.db import utcnow
from cityplus.core.errors import Conflict, Forbidden, NotFound, Unprocessable
from cityplus.core.identity.events import UserChanged
from cityplus.core.identity.models import ApiToken, LoginThrottle, Organisation, User, WebSession
from cityplus.core.modules import ROLES, Scope

_hasher = PasswordHasher()
USERNAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{2,63}$")
MIN_PASSWORD = 8
TOKEN_PREFIX = "cp_"
ORG_ROLES = ("department_staff", "department_admin")


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def check_password(user: User, password: str) -> bool:
    try:
        return _hasher.verify(user.password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


# --- organisations -----------------------------------------------------------------------------


def load_organisations(session: Session, actor: Actor) -> int:
    """Create or update every organisation from the packaged list (audited); returns how many changed."""
    data = json.loads(files("cityplus.core").joinpath("data/organisations.json").read_text("utf-8"))
    existing = {o.code: o for o in session.scalars(select(Organisation))}
    changed = 0
    for item in data["organisations"]:
        values = {
            "name_zh": item["name"]["zh"],
            "name_en": item["name"]["en"],
            "full_name_zh": item.get("full_name_zh") or item["name"]["zh"],
            "kind": item["kind"],
            "parent_code": item.get("parent"),
        }
        org = existing.get(item["code"])
        if org is None:
            session.add(Organisation(code=item["code"], **values))
            changed += 1
        elif any(getattr(org, k) != v for k, v in values.items()):
            for k, v in values.items():
                setattr(org, k, v)
            changed += 1
    session.flush()
    if changed:
        audit.append(session, actor, "organisations.load", "organisations", "packaged", {"changed": changed})
    return changed


def list_organisations(session: Session, kind: str | None = None, q: str | None = None) -> list[Organisation]:
    stmt = select(Organisation).order_by(Organisation.kind, Organisation.code)
    if kind:
        stmt = stmt.where(Organisation.kind == kind)
    if q:
        like = f"%{q}%"
        stmt = stmt.where(
            Organisation.name_zh.like(like)
            | Organisation.name_en.ilike(like)
            | Organisation.full_name_zh.like(like)
            | Organisation.code.like(like)
        )
    return list(session.scalars(stmt))


def get_organisation(session: Session, code: str) -> Organisation:
    org = session.scalar(select(Organisation).where(Organisation.code == code))
    if org is None:
        raise NotFound(f"no organisation with code {code!r}")
    return org


def organisation_by_name(session: Session) -> dict[str, Organisation]:
    return {o.name_zh: o for o in session.scalars(select(Organisation))}


# --- users -------------------------------------------------------------------------------------


def _validate_user_fields(username: str | None, password: str | None, role: str | None) -> None:
    errors = []
    if username is not None and not USERNAME_RE.match(username):
        errors.append({"field": "username", "message": "3–64 letters, digits, '.', '_' or '-'"})
    if password is not None and len(password) < MIN_PASSWORD:
        errors.append({"field": "password", "message": f"at least {MIN_PASSWORD} characters"})
    if role is not None and role not in ROLES:
        errors.append({"field": "role", "message": f"must be one of {', '.join(ROLES)}"})
    if errors:
        raise Unprocessable("invalid user", errors=errors)


def create_user(
    session: Session,
    actor: Actor,
    *,
    username: str,
    password: str,
    role: str,
    org_code: str | None = None,
    display_name: str = "",
    email: str | None = None,
) -> User:
    """Create a user; department roles need an organisation."""
    _validate_user_fields(username, password, role)
    org = get_organisation(session, org_code) if org_code else None
    if role in ORG_ROLES and org is None:
        raise Unprocessable("department roles need an organisation", errors=[
            {"field": "org", "message": f"role {role} requires an organisation code"}])
    if session.scalar(select(User.id).where(func.lower(User.username) == username.lower())) is not None:
        raise Conflict(f"user name {username!r} is taken")
    user = User(
        username=username,
        password_hash=hash_password(password),
        role=role,
        org=org,
        display_name=display_name or username,
        email=email,
    )
    session.add(user)
    session.flush()
    audit.append(session, actor, "user.create", "user", user.id,
                 {"username": username, "role": role, "org": org_code})
    _emit_user_event(session, "created", user)
    return user


def _emit_user_event(session: Session, what: str, user: User) -> None:
    events.record(session, UserChanged(change=what, user_id=user.id, username=user.username, role=user.role))


def update_user(
    session: Session,
    actor: Actor,
    user: User,
    *,
    role: str | None = None,
    org_code: str | None = None,
    clear_org: bool = False,
    display_name: str | None = None,
    email: str | None = None,
    is_active: bool | None = None,
    password: str | None = None,
) -> User:
    _validate_user_fields(None, password, role)
    change: dict[str, Any] = {}
    if role is not None and role != user.role:
        change["role"] = role
        user.role = role
    if clear_org and user.org is not None:
        change["org"] = None
        user.org = None
    elif org_code is not None:
        org = get_organisation(session, org_code)
        if user.org is None or user.org.code != org.code:
            change["org"] = org.code
            user.org = org
    if user.role in ORG_ROLES and user.org is None:
        raise Unprocessable("department roles need an organisation", errors=[
            {"field": "org", "message": f"role {user.role} requires an organisation code"}])
    if display_name is not None and display_name != user.display_name:
        change["display_name"] = display_name
        user.display_name = display_name
    if email is not None and email != user.email:
        change["email"] = email
        user.email = email
    if is_active is not None and is_active != user.is_active:
        change["is_active"] = is_active
        user.is_active = is_active
        if not is_active:
            end_sessions(session, user)
    if password is not None:
        change["password"] = "changed"
        user.password_hash = hash_password(password)
        end_sessions(session, user)
    if change:
        session.flush()
        audit.append(session, actor, "user.update", "user", user.id, change)
        _emit_user_event(session, "updated", user)
    return user


def set_locale(session: Session, actor: Actor, user: User, locale: str) -> None:
    if user.locale != locale:
        user.locale = locale
        audit.append(session, actor, "user.set_locale", "user", user.id, {"locale": locale})


def get_user(session: Session, user_id: int) -> User:
    user = session.get(User, user_id)
    if user is None:
        raise NotFound(f"no user with id {user_id}")
    return user


def get_user_by_name(session: Session, username: str) -> User | None:
    return session.scalar(select(User).where(func.lower(User.username) == username.lower()))


def list_users(
    session: Session,
    *,
    org_code: str | None = None,
    role: str | None = None,
    q: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> tuple[list[User], int]:
    stmt = select(User)
    if org_code:
        stmt = stmt.join(Organisation, User.org_id == Organisation.id).where(Organisation.code == org_code)
    if role:
        stmt = stmt.where(User.role == role)
    if q:
        stmt = stmt.where(User.username.ilike(f"%{q}%") | User.display_name.ilike(f"%{q}%"))
    total = session.scalar(select(func.count()).select_from(stmt.subquery())) or 0
    rows = session.scalars(stmt.order_by(User.username).limit(limit).offset(offset)).unique().all()
    return list(rows), total


def role_scopes(user: User, all_scopes: Iterable[Scope]) -> frozenset[str]:
    return frozenset(s.name for s in all_scopes if user.role in s.roles)


# --- API tokens --------------------------------------------------------------------------------


@dataclass(frozen=True)
class IssuedToken:
    token: ApiToken
    secret: str  # shown once


def create_token(
    session: Session,
    actor: Actor,
    user: User,
    *,
    name: str,
    scopes: Iterable[str],
    days: int | None,
    all_scopes: Iterable[Scope],
) -> IssuedToken:
    """Issue a token limited to scopes the user's role holds; the secret is returned once."""
    scopes = sorted(set(scopes))
    allowed = role_scopes(user, all_scopes)
    known = {s.name for s in all_scopes}
    errors = []
    if not scopes:
        errors.append({"field": "scopes", "message": "name at least one scope"})
    for s in scopes:
        if s not in known:
            errors.append({"field": "scopes", "message": f"unknown scope {s!r}"})
        elif s not in allowed:
            errors.append({"field": "scopes", "message": f"role {user.role} does not hold scope {s!r}"})
    if days is not None and not (1 <= days <= 3650):
        errors.append({"field": "days", "message": "between 1 and 3650"})
    if not name.strip() or len(name) > 100:
        errors.append({"field": "name", "message": "1–100 characters"})
    if errors:
        raise Unprocessable("invalid token request", errors=errors)
    raw = secrets.token_urlsafe(32)
    prefix = raw[:8]
    secret = f"{TOKEN_PREFIX}{raw}"
    token = ApiToken(
        user_id=user.id,
        name=name.strip(),
        prefix=f"{TOKEN_PREFIX}{prefix}",
        token_hash=digest(secret),
        scopes=list(scopes),
        expires_at=utcnow() + timedelta(days=days) if days else None,
    )
    session.add(token)
    session.flush()
    audit.append(session, actor, "token.create", "api_token", token.id,
                 {"user": user.username, "scopes": scopes, "days": days})
    return IssuedToken(token, secret)


def list_tokens(session: Session, user: User) -> list[ApiToken]:
    return list(session.scalars(
        select(ApiToken).where(ApiToken.user_id == user.id).order_by(ApiToken.created_at.desc())))


def revoke_token(session: Session, actor: Actor, user: User, token_id: int) -> ApiToken:
    token = session.get(ApiToken, token_id)
    if token is None or token.user_id != user.id:
        # Same answer for someone else's token as for none: no probing of other users' tokens.
        raise NotFound(f"no token with id {token_id}")
    if token.revoked_at is None:
        token.revoked_at = utcnow()
        audit.append(session, actor, "token.revoke", "api_token", token.id, {"user": user.username})
    return token


def authenticate_token(session: Session, secret: str) -> tuple[User, ApiToken] | None:
    if not secret.startswith(TOKEN_PREFIX) or len(secret) > 200:
        return None
    token = session.scalar(select(ApiToken).where(ApiToken.token_hash == digest(secret)))
    now = utcnow()
    if token is None or token.revoked_at is not None or (token.expires_at and token.expires_at <= now):
        return None
    user = session.get(User, token.user_id)
    if user is None or not user.is_active:
        return None
    return user, token


def token_needs_touch(token: ApiToken) -> bool:
    """last_used_at is kept to the minute, so most requests with a token write nothing."""
    return token.last_used_at is None or utcnow() - token.last_used_at > timedelta(minutes=1)


def touch_token(session: Session, token_id: int) -> None:
    session.execute(update(ApiToken).where(ApiToken.id == token_id).values(last_used_at=utcnow()))


# --- web sessions and sign-in -----------------------------------------------------------------


class Throttled(Exception):
    """Too many failed sign-ins; retry after the given number of seconds."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"too many failed sign-ins; try again in {retry_after} s")
        self.retry_after = retry_after


def _throttle_keys(username: str, client: str | None) -> list[str]:
    keys = [f"user:{username.lower()[:64]}"]
    if client:
        keys.append(f"addr:{client}")
    return keys


def check_throttle(session: Session, username: str, client: str | None) -> None:
    now = utcnow()
    for key in _throttle_keys(username, client):
        row = session.get(LoginThrottle, key)
        if row and row.locked_until and row.locked_until > now:
            raise Throttled(int((row.locked_until - now).total_seconds()) + 1)


def record_failure(session: Session, username: str, client: str | None, *, max_failures: int,
                   lockout_seconds: int) -> None:
    now = utcnow()
    window = timedelta(seconds=lockout_seconds)
    for key in _throttle_keys(username, client):
        # Addresses are shared (NAT, offices): allow them more attempts than one account.
        limit = max_failures if key.startswith("user:") else max_failures * 4
        row = session.get(LoginThrottle, key)
        if row is None:
            row = LoginThrottle(key=key, failures=0, window_started_at=now)
            session.add(row)
        if now - row.window_started_at > window:
            row.failures, row.window_started_at, row.locked_until = 0, now, None
        row.failures += 1
        if row.failures >= limit:
            row.locked_until = now + window


def clear_failures(session: Session, username: str) -> None:
    session.execute(delete(LoginThrottle).where(LoginThrottle.key == f"user:{username.lower()[:64]}"))


def login(session: Session, username: str, password: str, client: str | None, *, max_failures: int,
          lockout_seconds: int) -> User | None:
    """Check credentials with throttling; None on bad credentials (the failure is counted)."""
    check_throttle(session, username, client)
    user = get_user_by_name(session, username)
    if user is None:
        # Hash anyway so timing does not reveal which user names exist.
        _hasher.hash(password)
    if user is None or not user.is_active or not check_password(user, password):
        record_failure(session, username, client, max_failures=max_failures, lockout_seconds=lockout_seconds)
        audit.append(session, Actor(username=username[:64]), "auth.login_failed", "user", username[:64],
                     {"client": client})
        return None
    clear_failures(session, username)
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
    return user


def start_session(session: Session, user: User, hours: int) -> tuple[str, WebSession]:
    # Expired sessions are refused on sight; pruning them here keeps the table at live sessions only.
    session.execute(delete(WebSession).where(WebSession.user_id == user.id, WebSession.expires_at <= utcnow()))
    raw = secrets.token_urlsafe(32)
    ws = WebSession(id_hash=digest(raw), user_id=user.id, csrf_token=secrets.token_urlsafe(32),
                    expires_at=utcnow() + timedelta(hours=hours))
    session.add(ws)
    audit.append(session, Actor(username=user.username, user_id=user.id,
                                org_code=user.org.code if user.org else None, role=user.role),
                 "auth.login", "user", user.id, None)
    return raw, ws


def resolve_session(session: Session, raw: str) -> tuple[User, WebSession] | None:
    if not raw or len(raw) > 200:
        return None
    ws = session.get(WebSession, digest(raw))
    if ws is None or ws.expires_at <= utcnow():
        return None
    user = session.get(User, ws.user_id)
    if user is None or not user.is_active:
        return None
    return user, ws


def end_session(session: Session, raw: str, actor: Actor) -> None:
    ws = session.get(WebSession, digest(raw))
    if ws is not None:
        session.delete(ws)
        audit.append(session, actor, "auth.logout", "user", ws.user_id, None)


def end_sessions(session: Session, user: User) -> None:
    session.execute(delete(WebSession).where(WebSession.user_id == user.id))


def check_same_org(actor_user: User, target: User) -> None:
    """Department admins see only users of their own organisation."""
    if actor_user.role == "platform_admin":
        return
    if actor_user.org_id is None or actor_user.org_id != target.org_id:
        raise Forbidden("that user belongs to another organisation")

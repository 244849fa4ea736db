"""Core API: the signed-in user, API tokens, users, organisations, scopes and modules."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response

from cityplus.api.deps import PUBLIC_ROUTE, Ctx, DbSession, Public, Scoped
from cityplus.api.schemas import (
    InboxMessagePublic,
    LocaleUpdate,
    MePublic,
    ModulePublic,
    OrganisationPublic,
    Page,
    ScopePublic,
    TokenCreate,
    TokenIssued,
    TokenPublic,
    UserCreate,
    UserPublic,
    UserUpdate,
)
from cityplus.core import notify
from cityplus.core.errors import Forbidden
from cityplus.core.identity import service as identity
from cityplus.core.identity.models import Organisation, User

router = APIRouter(prefix="/api/v1")

# Bounded so no backend ever sees an integer it cannot store (PostgreSQL INTEGER is 32-bit).
RowId = Annotated[int, Path(ge=1, le=2**31 - 1)]


def org_public(o: Organisation) -> OrganisationPublic:
    return OrganisationPublic(code=o.code, name={"zh": o.name_zh, "en": o.name_en}, full_name_zh=o.full_name_zh,
                              kind=o.kind, parent=o.parent_code)


def user_public(u: User) -> UserPublic:
    return UserPublic(id=u.id, username=u.username, display_name=u.display_name, email=u.email, role=u.role,
                      org=u.org.code if u.org else None, locale=u.locale, is_active=u.is_active,
                      created_at=u.created_at)


# --- me and tokens ------------------------------------------------------------------------------


@router.get("/me", response_model=MePublic, tags=["account"], operation_id="get_me")
def get_me(principal: Scoped("account")) -> MePublic:
    """The signed-in user, the scopes this request holds and how it was authenticated."""
    base = user_public(principal.user).model_dump()
    return MePublic(**base, scopes=sorted(principal.scopes), auth=principal.via)


@router.put("/me/locale", status_code=204, tags=["account"], operation_id="set_my_locale")
def set_my_locale(body: LocaleUpdate, principal: Scoped("account"), session: DbSession) -> Response:
    """Keep the user's interface language (zh_CN or en)."""
    identity.set_locale(session, principal.actor, principal.user, body.locale)
    return Response(status_code=204)


@router.get("/me/tokens", response_model=list[TokenPublic], tags=["account"], operation_id="list_my_tokens")
def list_my_tokens(principal: Scoped("account"), session: DbSession) -> list[TokenPublic]:
    """The caller's API tokens (secrets are never shown again)."""
    return [TokenPublic.model_validate(t) for t in identity.list_tokens(session, principal.user)]


@router.post("/me/tokens", response_model=TokenIssued, status_code=201, tags=["account"],
             operation_id="create_my_token")
def create_my_token(body: TokenCreate, principal: Scoped("account"), session: DbSession, ctx: Ctx) -> TokenIssued:
    """Issue a scoped, expiring token; the secret is in this response only."""
    if principal.token is not None:
        # A token may mint tokens only within its own scopes.
        extra = set(body.scopes) - set(principal.scopes)
        if extra:
            raise Forbidden("a token cannot grant scopes it does not hold",
                            errors=[{"field": "scopes", "message": f"not held: {', '.join(sorted(extra))}"}])
    issued = identity.create_token(session, principal.actor, principal.user, name=body.name, scopes=body.scopes,
                                   days=body.days, all_scopes=ctx.registry.all_scopes())
    return TokenIssued(**TokenPublic.model_validate(issued.token).model_dump(), token=issued.secret)


@router.delete("/me/tokens/{token_id}", status_code=204, tags=["account"], operation_id="revoke_my_token")
def revoke_my_token(token_id: RowId, principal: Scoped("account"), session: DbSession) -> Response:
    """Revoke one of the caller's tokens (idempotent)."""
    identity.revoke_token(session, principal.actor, principal.user, token_id)
    return Response(status_code=204)


# --- users --------------------------------------------------------------------------------------


@router.get("/users", response_model=Page[UserPublic], tags=["users"], operation_id="list_users")
def list_users(
    principal: Scoped("users.read"),
    session: DbSession,
    org: Annotated[str | None, Query(max_length=32)] = None,
    role: Annotated[str | None, Query(max_length=32)] = None,
    q: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> Page[UserPublic]:
    """Users, filterable; department admins see their own organisation only."""
    if principal.user.role != "platform_admin":
        org = principal.user.org.code if principal.user.org else "-"
    rows, total = identity.list_users(session, org_code=org, role=role, q=q, limit=limit, offset=offset)
    return Page[UserPublic](items=[user_public(u) for u in rows], total=total, limit=limit, offset=offset)


@router.post("/users", response_model=UserPublic, status_code=201, tags=["users"], operation_id="create_user")
def create_user(body: UserCreate, principal: Scoped("users.manage"), session: DbSession) -> UserPublic:
    """Create a user account."""
    user = identity.create_user(session, principal.actor, username=body.username, password=body.password,
                                role=body.role, org_code=body.org, display_name=body.display_name,
                                email=body.email)
    return user_public(user)


@router.get("/users/{user_id}", response_model=UserPublic, tags=["users"], operation_id="get_user")
def get_user(user_id: RowId, principal: Scoped("users.read"), session: DbSession) -> UserPublic:
    """One user."""
    user = identity.get_user(session, user_id)
    identity.check_same_org(principal.user, user)
    return user_public(user)


@router.patch("/users/{user_id}", response_model=UserPublic, tags=["users"], operation_id="update_user")
def update_user(user_id: RowId, body: UserUpdate, principal: Scoped("users.manage"), session: DbSession) -> UserPublic:
    """Change a user's role, organisation, details, activation or password."""
    user = identity.get_user(session, user_id)
    identity.update_user(session, principal.actor, user, role=body.role, org_code=body.org,
                         clear_org=body.clear_org, display_name=body.display_name, email=body.email,
                         is_active=body.is_active, password=body.password)
    return user_public(user)


# --- organisations, scopes, modules -------------------------------------------------------------


@router.get("/orgs", response_model=list[OrganisationPublic], tags=["organisations"], operation_id="list_orgs",
            dependencies=[PUBLIC_ROUTE])
def list_orgs(
    session: DbSession,
    kind: Annotated[str | None, Query(max_length=16)] = None,
    q: Annotated[str | None, Query(max_length=64)] = None,
) -> list[OrganisationPublic]:
    """Every organisation of the city: municipal departments, districts and zones."""
    return [org_public(o) for o in identity.list_organisations(session, kind=kind, q=q)]


@router.get("/orgs/{code}", response_model=OrganisationPublic, tags=["organisations"], operation_id="get_org",
            dependencies=[PUBLIC_ROUTE])
def get_org(code: str, session: DbSession) -> OrganisationPublic:
    """One organisation by its stable code."""
    return org_public(identity.get_organisation(session, code))


@router.get("/scopes", response_model=list[ScopePublic], tags=["meta"], operation_id="list_scopes")
def list_scopes(_: Public, ctx: Ctx) -> list[ScopePublic]:
    """Every scope the platform's modules declare, with the roles that hold it."""
    return [ScopePublic(name=s.name, description=s.description, roles=list(s.roles))
            for s in ctx.registry.all_scopes()]


@router.get("/modules", response_model=list[ModulePublic], tags=["meta"], operation_id="list_modules")
def list_modules(_: Public, ctx: Ctx) -> list[ModulePublic]:
    """The installed modules and the plan tasks each serves."""
    return [ModulePublic(name=m.name, title=m.title, plan_tasks=list(m.plan_tasks),
                         scopes=[s.name for s in m.scopes]) for m in ctx.registry]



# --- inbox (站内信) ------------------------------------------------------------------------------


@router.get("/me/inbox", response_model=list[InboxMessagePublic], tags=["account"], operation_id="list_my_inbox")
def list_my_inbox(principal: Scoped("account"), session: DbSession,
                  unread: Annotated[bool, Query(description="only unread messages")] = False,
                  limit: Annotated[int, Query(ge=1, le=200)] = 50) -> list[InboxMessagePublic]:
    """The caller's in-app messages (reminders and notices), newest first."""
    return [InboxMessagePublic.model_validate(m)
            for m in notify.inbox(session, principal.user.id, unread_only=unread, limit=limit)]


@router.post("/me/inbox/{message_id}/read", status_code=204, tags=["account"], operation_id="mark_my_message_read")
def mark_my_message_read(message_id: RowId, principal: Scoped("account"), session: DbSession) -> Response:
    """Mark one of the caller's messages read."""
    notify.mark_read(session, principal.user.id, message_id)
    return Response(status_code=204)

"""UI names of the platform's fixed vocabularies (roles, organisation kinds, notices), marked for translation."""

from __future__ import annotations

from cityplus.web.i18n import N_

ROLE_NAMES = {
    "citizen": N_("Citizen"),
    "enterprise": N_("Enterprise user"),
    "department_staff": N_("Department staff"),
    "department_admin": N_("Department administrator"),
    "platform_admin": N_("Platform administrator"),
    "developer": N_("Developer"),
}

# In the order the organisations page lists them.
KIND_NAMES = {
    "commission": N_("Municipal commissions"),
    "bureau": N_("Municipal bureaus"),
    "office": N_("Municipal offices"),
    "centre": N_("Municipal centres"),
    "vertical": N_("Vertically managed units"),
    "district": N_("Districts, county-level cities and counties"),
    "zone": N_("Development zones"),
}

KIND_SINGULAR = {
    "commission": N_("Municipal commission"),
    "bureau": N_("Municipal bureau"),
    "office": N_("Municipal office"),
    "centre": N_("Municipal centre"),
    "vertical": N_("Vertically managed unit"),
    "district": N_("District, county-level city or county"),
    "zone": N_("Development zone"),
}

# Confirmation shown after a Post/Redirect/Get round trip (`?notice=<key>`); unknown keys are ignored.
NOTICES = {
    "signed_out": N_("You have signed out."),
    "profile_saved": N_("Your details have been saved."),
    "password_changed": N_("Your password has been changed. Other sessions have been signed out."),
    "token_revoked": N_("The token has been revoked. Programs using it can no longer sign in."),
    "user_created": N_("The user account has been created."),
    "user_saved": N_("The user account has been updated."),
}


def notice(key: str | None) -> str | None:
    """The msgid of a known notice key, else None (query strings are never echoed)."""
    return NOTICES.get(key or "")

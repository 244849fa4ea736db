"""Portal languages (界面语言): Babel catalogs read from .po at runtime, locale resolution, Jinja gettext.

Source strings are English. Chinese lives in ``locale/zh_CN/LC_MESSAGES/messages.po``; English needs no
catalog (the source strings are shown). The .po file is compiled in memory on first use, so no binary .mo
file is committed and a translator's edit shows up after a restart without a build step.

Re-extract after changing UI text (from the repository root), then translate the new entries::

    pybabel extract -F src/cityplus/web/babel.cfg -o src/cityplus/web/locale/messages.pot --no-wrap src/cityplus
    pybabel update -i src/cityplus/web/locale/messages.pot -d src/cityplus/web/locale -l zh_CN --no-wrap

``tests/web/test_i18n.py`` fails while any extracted string has no Chinese translation.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone, tzinfo
from functools import cache
from gettext import NullTranslations
from io import BytesIO
from pathlib import Path
from typing import Any

from babel.dates import format_date, format_datetime
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import Translations
from jinja2 import Environment, pass_context
from jinja2.runtime import Context

LOCALES = ("zh_CN", "en")
LOCALE_COOKIE = "cityplus_locale"
LOCALE_DIR = Path(__file__).parent / "locale"
DOMAIN = "messages"
HTML_LANG = {"zh_CN": "zh-CN", "en": "en"}
LANGUAGE_NAMES = {"zh_CN": "中文", "en": "English"}  # each language named in itself, as switches do


def _city_tz() -> tzinfo:
    try:
        from zoneinfo import ZoneInfo

        return ZoneInfo("Asia/Shanghai")
    except Exception:  # no tz database on this machine: China has no daylight saving time
        return timezone(timedelta(hours=8), "CST")


CITY_TZ = _city_tz()  # times are shown as Chengdu local time


def N_(message: str) -> str:  # noqa: N802 - the conventional gettext marker name
    """Mark a string for extraction; it is translated where it is shown (in a template, with `_`)."""
    return message


@cache
def translations(locale: str) -> NullTranslations:
    """The compiled catalog of a locale; source strings when there is none (English)."""
    po = LOCALE_DIR / locale / "LC_MESSAGES" / f"{DOMAIN}.po"
    if not po.is_file():
        return NullTranslations()
    with po.open("rb") as fh:
        catalog = read_po(fh, locale=locale, domain=DOMAIN)
    buf = BytesIO()
    write_mo(buf, catalog, use_fuzzy=False)  # a fuzzy entry is an unreviewed guess: show the source
    buf.seek(0)
    return Translations(fp=buf, domain=DOMAIN)


def normalize(value: str | None) -> str | None:
    """A supported locale code for values like 'zh', 'zh-CN', 'en-GB'; None when unsupported."""
    if not value:
        return None
    v = value.strip().replace("-", "_").lower()
    if v in ("zh", "zh_cn", "zh_hans", "zh_hans_cn"):
        return "zh_CN"
    if v == "en" or v.startswith("en_"):
        return "en"
    return None


def resolve_locale(user_locale: str | None, cookie: str | None, default: str) -> str:
    """The signed-in user's choice, else the browser's cookie, else the configured default."""
    return normalize(user_locale) or normalize(cookie) or normalize(default) or LOCALES[0]


def gettext(locale: str, message: str, **variables: Any) -> str:
    """Translate (and %-format) a message outside templates, e.g. for a response header."""
    text = translations(locale).gettext(message)
    return text % variables if variables else text


# The Jinja callables are installed once on the shared Environment and read the locale from the render
# context. Installing per-request callables with `install_gettext_callables` would mutate globals shared
# by every thread (sync routes render in a thread pool), and a per-locale `Environment.overlay` shares the
# template cache with its parent, so templates compiled for one language could serve the other.
@pass_context
def _ctx_gettext(context: Context, message: str) -> str:
    return translations(context["locale"]).gettext(message)


@pass_context
def _ctx_ngettext(context: Context, singular: str, plural: str, n: int) -> str:
    return translations(context["locale"]).ngettext(singular, plural, n)


@pass_context
def pick(context: Context, obj: Any, field: str) -> Any:
    """Data shown in the reader's language: `obj.<field>_zh` / `_en` or a {'zh','en'} dict."""
    lang = "zh" if context["locale"] == "zh_CN" else "en"
    if isinstance(obj, dict):
        value = obj.get(field) if field else obj
        if isinstance(value, dict):
            return value.get(lang) or value.get("zh") or value.get("en") or ""
        return value
    return getattr(obj, f"{field}_{lang}", None) or getattr(obj, f"{field}_zh", "")


@pass_context
def loc(context: Context, value: dict[str, str] | None) -> str:
    """Filter: the reader's language from a {'zh': …, 'en': …} dict."""
    if not value:
        return ""
    lang = "zh" if context["locale"] == "zh_CN" else "en"
    return value.get(lang) or value.get("zh") or value.get("en") or ""


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


@pass_context
def fmt_datetime(context: Context, value: datetime | None) -> str:
    """Filter: a timestamp in Chengdu time, formatted for the reader's locale."""
    if value is None:
        return ""
    return format_datetime(_aware(value), "medium", tzinfo=CITY_TZ, locale=context["locale"])


@pass_context
def fmt_date(context: Context, value: datetime | None) -> str:
    """Filter: the Chengdu calendar date of a timestamp, for the reader's locale."""
    if value is None:
        return ""
    return format_date(_aware(value).astimezone(CITY_TZ).date(), "medium", locale=context["locale"])


def install(env: Environment) -> None:
    """Enable `{% trans %}` and `_()` in templates (newstyle: autoescaped, %-formatted, trimmed)."""
    env.add_extension("jinja2.ext.i18n")
    env.policies["ext.i18n.trimmed"] = True
    env.install_gettext_callables(_ctx_gettext, _ctx_ngettext, newstyle=True)  # type: ignore[attr-defined]
    env.globals["pick"] = pick
    env.filters["loc"] = loc
    env.filters["datetime"] = fmt_datetime
    env.filters["date"] = fmt_date

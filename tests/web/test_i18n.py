"""The portal's UI text is complete in Chinese, extracted from the source, and never hard-coded in templates."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po
from jinja2 import Environment

from cityplus.web import i18n

SRC = Path(__file__).resolve().parents[2] / "src" / "cityplus"
WEB = SRC / "web"
BABEL_CFG = WEB / "babel.cfg"
PO = WEB / "locale" / "zh_CN" / "LC_MESSAGES" / "messages.po"
POT = WEB / "locale" / "messages.pot"
TEMPLATES = sorted([*SRC.glob("web/templates/**/*.html"), *SRC.glob("modules/*/templates/**/*.html")])

# Visible words a template may contain without gettext: the product's name only.
ALLOWED_WORDS = {"CityPlus"}
GETTEXT_CALLS = {"_", "gettext", "ngettext"}
# Attributes whose values people see or hear (tooltips, accessible names, confirmation prompts, JS messages).
VISIBLE_ATTRS = {"title", "alt", "placeholder", "aria-label", "aria-description", "aria-roledescription",
                 "aria-valuetext", "aria-placeholder", "hx-confirm", "hx-prompt", "label"}
LATIN_WORD = re.compile(r"[A-Za-z]{2,}")
CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")  # ideographs; CJK punctuation is fine
PROSE = re.compile(r"[A-Za-z]{2,}\s+[A-Za-z]{2,}")


def _msgid(message_id: str | tuple[str, ...]) -> str:
    return message_id[0] if isinstance(message_id, tuple) else message_id


def catalog():  # type: ignore[no-untyped-def]
    with PO.open("rb") as fh:
        return read_po(fh, locale="zh_CN")


def extracted() -> dict[str, list[str]]:
    """Every msgid in the source now, with where it occurs (same mapping as `pybabel extract`)."""
    with BABEL_CFG.open(encoding="utf-8") as fh:
        method_map, options_map = parse_mapping_cfg(fh, str(BABEL_CFG))
    found: dict[str, list[str]] = {}
    for filename, lineno, message, _comments, _context in extract_from_dir(str(SRC), method_map, options_map):
        msgid = _msgid(message)
        if msgid:
            found.setdefault(msgid, []).append(f"{filename}:{lineno}")
    return found


def test_every_catalog_entry_is_translated() -> None:
    cat = catalog()
    assert not cat.fuzzy, "the catalog header is marked fuzzy"
    problems = []
    for message in cat:
        if not message.id:
            continue
        strings = message.string if isinstance(message.string, tuple) else (message.string,)
        if message.fuzzy:
            problems.append(f"fuzzy: {_msgid(message.id)!r}")
        elif not all(s and s.strip() for s in strings):
            problems.append(f"untranslated: {_msgid(message.id)!r}")
    for message, errors in cat.check():  # placeholders like %(name)s must survive translation
        problems.extend(f"{_msgid(message.id)!r}: {e}" for e in errors)
    assert not problems, "zh_CN catalog problems:\n  " + "\n  ".join(problems)


def test_every_source_string_is_in_the_catalog() -> None:
    """Fails on UI text added without a translation: re-extract and translate (see cityplus.web.i18n)."""
    source = extracted()
    known = {_msgid(m.id) for m in catalog() if m.id}
    missing = sorted(set(source) - known)
    assert len(source) > 150, "extraction found suspiciously little text; is babel.cfg right?"
    assert not missing, "strings without a zh_CN translation (run pybabel extract/update):\n  " + "\n  ".join(
        f"{m!r} ({source[m][0]})" for m in missing)
    stale = sorted(known - set(source))
    assert not stale, "catalog entries no longer in the source (run pybabel update):\n  " + "\n  ".join(stale)


def test_the_message_template_is_current() -> None:
    with POT.open("rb") as fh:
        pot = {_msgid(m.id) for m in read_po(fh) if m.id}
    missing = sorted(set(extracted()) - pot)
    assert not missing, f"messages.pot is out of date (run pybabel extract): {missing[:10]}"


def test_translations_load_and_apply() -> None:
    assert i18n.translations("zh_CN").gettext("Sign in") == "登录"
    assert i18n.translations("en").gettext("Sign in") == "Sign in"
    assert i18n.resolve_locale(None, None, "zh_CN") == "zh_CN"
    assert i18n.resolve_locale(None, "en", "zh_CN") == "en"
    assert i18n.resolve_locale("zh_CN", "en", "en") == "zh_CN"
    assert i18n.resolve_locale(None, "fr", "en") == "en"


# --- hard-coded text in templates ----------------------------------------------------------


class _VisibleText(HTMLParser):
    """Collects text nodes and visible attribute values of an HTML fragment."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style"):
            self._skip += 1
        values = dict(attrs)
        for name, value in attrs:
            shown = (
                name in VISIBLE_ATTRS
                or (name.startswith("data-") and not (value or "").startswith(("#", ".")))
                or (name == "value" and tag == "input" and values.get("type") in ("submit", "button", "reset"))
                or (name == "content" and tag == "meta" and values.get("name") == "description")
            )
            if shown and value:
                self.found.append(value)

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style") and self._skip:
            self._skip -= 1

    def handle_data(self, data: str) -> None:
        if not self._skip and data.strip():
            self.found.append(data)


def hard_coded_text(source: str) -> list[str]:
    """Visible text outside {% trans %} and _()/gettext/ngettext: template data and prose string literals."""
    env = Environment(extensions=["jinja2.ext.i18n"])
    html: list[str] = []
    literals: list[str] = []
    in_trans = False
    calls: list[str | None] = []
    last_name: str | None = None
    expect_tag_name = False
    for _lineno, kind, value in env.lex(source):
        if kind == "block_begin":
            expect_tag_name = True
            continue
        if kind == "name" and expect_tag_name:
            expect_tag_name = False
            if value in ("trans", "pluralize"):
                in_trans = True
            elif value == "endtrans":
                in_trans = False
        elif kind != "whitespace":
            expect_tag_name = False
        if kind == "data":
            html.append("" if in_trans else value)
        elif kind == "name":
            last_name = value
            continue
        elif kind == "operator" and value == "(":
            calls.append(last_name)
        elif kind == "operator" and value == ")" and calls:
            calls.pop()
        elif (kind == "string" and not (calls and calls[-1] in GETTEXT_CALLS)
              and (CJK.search(value) or PROSE.search(value))):
            literals.append(value)
        last_name = None
    parser = _VisibleText()
    parser.feed("".join(html))
    parser.close()
    flagged = []
    for text in parser.found:
        words = [w for w in LATIN_WORD.findall(text) if w not in ALLOWED_WORDS]
        if words or CJK.search(text):
            flagged.append(" ".join(text.split()))
    return flagged + [f"literal {lit}" for lit in literals]


def test_scanner_catches_hard_coded_text() -> None:
    assert hard_coded_text("<p>Sign in</p>") == ["Sign in"]
    assert hard_coded_text("<p>{{ n }} 项任务</p>") == ["项任务"]
    assert hard_coded_text('<a title="Home" href="/">{{ _("Home") }}</a>') == ["Home"]
    assert hard_coded_text("<p>{{ 'Hello there' if x }}</p>") == ["literal 'Hello there'"]
    assert hard_coded_text('<input aria-label="{{ x }} results" value="Go" type="submit">') == ["results", "Go"]
    assert hard_coded_text('<p>{% trans n=1 %}{{ n }} task{% pluralize %}{{ n }} tasks{% endtrans %}</p>') == []
    assert hard_coded_text("<b>{{ _('A b c') }}</b> CityPlus · {{ ngettext('a b', 'a bs', 2) }}") == []


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda p: str(p.relative_to(SRC)))
def test_templates_have_no_hard_coded_text(template: Path) -> None:
    flagged = hard_coded_text(template.read_text(encoding="utf-8"))
    assert not flagged, f"{template.name}: visible text outside gettext: {flagged}"

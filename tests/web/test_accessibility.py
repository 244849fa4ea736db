"""Structural accessibility of every page: one h1, ordered headings, labelled controls, valid references."""

from __future__ import annotations

from html.parser import HTMLParser

import httpx

from tests.web.helpers import sign_in

CONTROLS = {"input", "select", "textarea"}
UNLABELLED_INPUTS = {"hidden", "submit", "button", "reset", "image"}


class _Page(HTMLParser):
    """Collects what the checks need from one HTML page."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.lang: str | None = None
        self.title = ""
        self.ids: list[str] = []
        self.refs: list[tuple[str, str]] = []  # (attribute, referenced id)
        self.label_for: set[str] = set()
        self.controls: list[dict[str, str | None]] = []
        self.headings: list[int] = []
        self.buttons: list[str] = []
        self._in_title = False
        self._label_depth = 0
        self._button: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "html":
            self.lang = a.get("lang")
        if tag == "title":
            self._in_title = True
        if a.get("id"):
            self.ids.append(str(a["id"]))
        for name in ("aria-labelledby", "aria-describedby", "aria-controls"):
            for ref in (a.get(name) or "").split():
                self.refs.append((name, ref))
        href = a.get("href") or ""
        if href.startswith("#") and len(href) > 1:
            self.refs.append(("href", href[1:]))
        if tag == "label":
            self._label_depth += 1
            if a.get("for"):
                self.label_for.add(str(a["for"]))
        hidden = "hidden" in a or (tag == "input" and a.get("type") in UNLABELLED_INPUTS)
        if tag in CONTROLS and not hidden:
            self.controls.append({**a, "_wrapped": "yes" if self._label_depth else None, "_tag": tag})
        if tag in ("h1", "h2", "h3", "h4", "h5", "h6"):
            self.headings.append(int(tag[1]))
        if tag == "button":
            self._button = [a.get("aria-label") or ""]

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False
        if tag == "label":
            self._label_depth -= 1
        if tag == "button" and self._button is not None:
            self.buttons.append("".join(self._button).strip())
            self._button = None

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data
        if self._button is not None:
            self._button.append(data)


def problems_of(html: str) -> list[str]:
    page = _Page()
    page.feed(html)
    page.close()
    found = []
    if page.lang not in ("zh-CN", "en"):
        found.append(f"html lang is {page.lang!r}")
    if not page.title.strip():
        found.append("empty <title>")
    if page.headings.count(1) != 1:
        found.append(f"{page.headings.count(1)} h1 elements")
    for before, after in zip(page.headings, page.headings[1:], strict=False):
        if after > before + 1:
            found.append(f"heading level jumps from h{before} to h{after}")
    duplicates = {i for i in page.ids if page.ids.count(i) > 1}
    if duplicates:
        found.append(f"duplicate ids {sorted(duplicates)}")
    ids = set(page.ids)
    found += [f"{attr} points at missing id {ref!r}" for attr, ref in page.refs if ref not in ids]
    for c in page.controls:
        labelled = c.get("_wrapped") or c.get("aria-label") or c.get("aria-labelledby") or (
            c.get("id") and c["id"] in page.label_for)
        if not labelled:
            found.append(f"{c['_tag']} name={c.get('name')!r} has no label")
    found += ["a button without text" for b in page.buttons if not b]
    return found


async def _check(client: httpx.AsyncClient, paths: list[str]) -> list[str]:
    problems = []
    for path in paths:
        r = await client.get(path)
        assert r.status_code in (200, 404), (path, r.status_code)
        problems += [f"{path}: {p}" for p in problems_of(r.text)]
    return problems


async def test_public_pages_are_well_formed(browser: httpx.AsyncClient) -> None:
    paths = ["/", "/plan", "/plan/areas/1", "/plan/areas/12", "/plan/tasks/1", "/plan/tasks/46",
             "/plan/coverage", "/orgs", "/orgs/fgw", "/orgs/gaj-xfj", "/login", "/no-such-page"]
    problems = await _check(browser, paths)
    assert not problems, "\n".join(problems)


async def test_signed_in_pages_are_well_formed(browser: httpx.AsyncClient, make_user) -> None:  # type: ignore[no-untyped-def]
    admin = make_user("platform_admin")
    await sign_in(browser, admin.username, admin.password)
    paths = ["/profile", "/tokens", "/admin/users", "/admin/users/new", f"/admin/users/{admin.user_id}",
             "/admin/audit", "/admin/audit/verify", "/"]
    problems = await _check(browser, paths)
    assert not problems, "\n".join(problems)
    # Pages with form errors, too (error summary links point at the fields).
    token = (await browser.get("/tokens")).text.split('name="csrf_token" value="')[1].split('"')[0]
    r = await browser.post("/tokens", data={"csrf_token": token, "name": "", "days": "5"})
    assert r.status_code == 422
    assert not problems_of(r.text), problems_of(r.text)

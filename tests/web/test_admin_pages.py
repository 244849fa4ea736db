"""Administration pages: who may see them, user management and the audit log."""

from __future__ import annotations

import re

import httpx
import pytest

from tests.web.helpers import csrf_of, form_token, sign_in

ADMIN_PAGES = ("/admin/users", "/admin/users/new", "/admin/audit", "/admin/audit/verify")


@pytest.mark.parametrize("role, allowed", [
    ("citizen", set()),
    ("developer", set()),
    ("department_staff", set()),
    ("department_admin", {"/admin/users"}),
    ("platform_admin", set(ADMIN_PAGES)),
])
async def test_admin_pages_by_role(browser: httpx.AsyncClient, make_user, role: str, allowed: set[str]) -> None:  # type: ignore[no-untyped-def]
    user = make_user(role)
    await sign_in(browser, user.username, user.password)
    for path in ADMIN_PAGES:
        r = await browser.get(path)
        expected = 200 if path in allowed else 403
        assert r.status_code == expected, (role, path)
        if expected == 403:
            assert "无权访问" in r.text and r.headers["content-type"].startswith("text/html")
    nav = (await browser.get("/")).text
    assert ('href="/admin/users"' in nav) == ("/admin/users" in allowed)
    assert ('href="/admin/audit"' in nav) == ("/admin/audit" in allowed)


async def test_admin_pages_redirect_anonymous_visitors(browser: httpx.AsyncClient) -> None:
    r = await browser.get("/admin/audit?actor=x")
    assert r.status_code == 303
    assert r.headers["location"] == "/login?next=/admin/audit%3Factor%3Dx"


async def test_platform_admin_creates_and_edits_a_user(browser: httpx.AsyncClient, make_user) -> None:  # type: ignore[no-untyped-def]
    admin = make_user("platform_admin")
    await sign_in(browser, admin.username, admin.password)
    token = await form_token(browser, "/admin/users/new")
    bad = await browser.post("/admin/users", data={"csrf_token": token, "username": "x", "password": "short",
                                                   "role": "department_staff", "org": ""})
    assert bad.status_code == 422
    for message in ("请使用3至64个字母", "请至少使用8个字符", "部门角色必须指定所属单位"):
        assert message in bad.text
    r = await browser.post("/admin/users", data={"csrf_token": token, "username": "li.si", "password": "initial-pw-1",
                                                 "role": "department_staff", "org": "hbj", "display_name": "李四",
                                                 "email": "li.si@example.cn"})
    assert r.status_code == 303
    location = r.headers["location"]
    assert re.fullmatch(r"/admin/users/\d+\?notice=user_created", location)
    page = await browser.get(location)
    assert "用户账户已创建" in page.text and "李四" in page.text and "部门工作人员" in page.text
    again = await browser.post("/admin/users", data={"csrf_token": token, "username": "li.si",
                                                     "password": "initial-pw-1", "role": "citizen"})
    assert again.status_code == 422 and "该用户名已被占用" in again.text

    user_path = location.split("?")[0]
    r = await browser.post(user_path, data={"csrf_token": token, "role": "department_admin", "org": "hbj",
                                            "display_name": "李四"})
    assert r.status_code == 303
    page = await browser.get(r.headers["location"])
    assert "部门管理员" in page.text and "已停用" in page.text  # the box was not ticked: deactivated

    listing = await browser.get("/admin/users", params={"org": "hbj", "role": "department_admin", "q": "li"})
    assert "li.si" in listing.text and "共找到 1 个用户" in listing.text
    audit = await browser.get("/admin/audit", params={"action": "user.update", "actor": admin.username})
    assert "user.update" in audit.text and "共 1 条匹配记录" in audit.text


async def test_admin_cannot_demote_or_deactivate_themselves(browser: httpx.AsyncClient, make_user) -> None:  # type: ignore[no-untyped-def]
    admin = make_user("platform_admin")
    await sign_in(browser, admin.username, admin.password)
    token = await form_token(browser, f"/admin/users/{admin.user_id}")
    r = await browser.post(f"/admin/users/{admin.user_id}", data={"csrf_token": token, "role": "citizen",
                                                                 "org": "", "is_active": "on"})
    assert r.status_code == 422 and "不能修改本人账户的角色" in r.text
    page = await browser.get(f"/admin/users/{admin.user_id}")
    assert "平台管理员" in page.text  # unchanged


async def test_department_admin_sees_only_their_organisation(browser: httpx.AsyncClient, make_user) -> None:  # type: ignore[no-untyped-def]
    dept_admin = make_user("department_admin", org="fgw")
    colleague = make_user("department_staff", org="fgw")
    outsider = make_user("department_staff", org="hbj")
    await sign_in(browser, dept_admin.username, dept_admin.password)
    listing = await browser.get("/admin/users", params={"org": "hbj"})
    assert colleague.username in listing.text and outsider.username not in listing.text
    assert 'href="/admin/users/new"' not in listing.text  # no users.manage
    assert (await browser.get(f"/admin/users/{outsider.user_id}")).status_code == 403
    page = await browser.get(f"/admin/users/{colleague.user_id}")
    assert page.status_code == 200 and 'action="/admin/users/' not in page.text


async def test_audit_log_filters_pages_and_verifies(browser: httpx.AsyncClient, make_user) -> None:  # type: ignore[no-untyped-def]
    admin = make_user("platform_admin")
    for _ in range(3):
        make_user("citizen")
    await sign_in(browser, admin.username, admin.password)
    page = await browser.get("/admin/audit")
    assert page.status_code == 200
    seqs = [int(s) for s in re.findall(r'<td class="num">(\d+)</td>', page.text)]
    assert seqs == sorted(seqs, reverse=True) and len(seqs) >= 5
    created = await browser.get("/admin/audit", params={"action": "user.create"})
    assert "共 4 条匹配记录" in created.text
    bad_date = await browser.get("/admin/audit", params={"since": "2016-13-45"})
    assert bad_date.status_code == 422 and "请按“年-月-日”格式输入日期" in bad_date.text
    today = await browser.get("/admin/audit", params={"since": "2000-01-01", "until": "2999-12-31"})
    assert today.status_code == 200
    older = await browser.get("/admin/audit", params={"before": str(seqs[1])})
    older_seqs = [int(s) for s in re.findall(r'<td class="num">(\d+)</td>', older.text)]
    assert older_seqs and max(older_seqs) < seqs[1]
    assert "最新条目" in older.text
    verify = await browser.get("/admin/audit/verify")
    assert verify.status_code == 200 and "哈希链完整" in verify.text
    assert csrf_of(verify.text)

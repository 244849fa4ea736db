"""Sign-in, sign-out, CSRF, profile and API token pages."""

from __future__ import annotations

import re

import httpx

from tests.web.helpers import csrf_of, form_token, sign_in


async def test_anonymous_page_redirects_to_sign_in(browser: httpx.AsyncClient) -> None:
    r = await browser.get("/tokens")
    assert r.status_code == 303
    assert r.headers["location"] == "/login?next=/tokens"
    r = await browser.get("/login?next=/tokens")
    assert 'name="next" value="/tokens"' in r.text


async def test_wrong_password_shows_an_error(browser: httpx.AsyncClient, make_user) -> None:  # type: ignore[no-untyped-def]
    user = make_user("citizen")
    r = await sign_in(browser, user.username, "wrong-password")
    assert r.status_code == 422
    assert "用户名或密码不正确" in r.text
    assert 'role="alert"' in r.text
    assert f'value="{user.username}"' in r.text  # the user name is kept, the password is not
    assert not any(c.startswith("cityplus_session=") for c in r.headers.get_list("set-cookie"))


async def test_sign_in_is_throttled_after_repeated_failures(browser: httpx.AsyncClient, make_user) -> None:  # type: ignore[no-untyped-def]
    user = make_user("citizen")
    for _ in range(5):
        r = await sign_in(browser, user.username, "wrong-password")
        assert r.status_code == 422
    r = await sign_in(browser, user.username, user.password)  # even the right password must wait now
    assert r.status_code == 429
    assert "登录失败次数过多" in r.text and "分钟后重试" in r.text
    assert int(r.headers["retry-after"]) > 0


async def test_sign_in_sets_a_safe_session_cookie_and_goes_on(browser: httpx.AsyncClient, make_user) -> None:  # type: ignore[no-untyped-def]
    user = make_user("citizen")
    r = await sign_in(browser, user.username, user.password, next_path="/tokens")
    assert r.status_code == 303
    assert r.headers["location"] == "/tokens"
    cookie = next(c for c in r.headers.get_list("set-cookie") if c.startswith("cityplus_session="))
    assert "httponly" in cookie.lower() and "samesite=lax" in cookie.lower()
    assert "secure" not in cookie.lower()  # base_url is http:// in tests
    page = await browser.get("/profile")
    assert page.status_code == 200
    assert user.username in page.text and "市民" in page.text
    assert (await browser.get("/login")).headers["location"] == "/profile"  # already signed in


async def test_sign_in_ignores_an_open_redirect(browser: httpx.AsyncClient, make_user) -> None:  # type: ignore[no-untyped-def]
    user = make_user("citizen")
    r = await sign_in(browser, user.username, user.password, next_path="https://evil.example/steal")
    assert r.status_code == 303
    assert r.headers["location"] == "/profile"
    r = await browser.get("/login?next=//evil.example")
    assert r.headers["location"] == "/profile"


async def test_forms_without_csrf_token_are_refused(browser: httpx.AsyncClient, make_user) -> None:  # type: ignore[no-untyped-def]
    user = make_user("citizen")
    await browser.get("/login")  # has the CSRF cookie now, but the form field is missing
    r = await browser.post("/login", data={"username": user.username, "password": user.password})
    assert r.status_code == 403
    assert r.headers["content-type"].startswith("text/html")
    assert "表单已失效" in r.text
    await sign_in(browser, user.username, user.password)
    r = await browser.post("/tokens", data={"name": "x", "scopes": "account", "days": "30",
                                            "csrf_token": "forged"})
    assert r.status_code == 403 and "表单已失效" in r.text


async def test_sign_out_ends_the_session(browser: httpx.AsyncClient, make_user) -> None:  # type: ignore[no-untyped-def]
    user = make_user("citizen")
    await sign_in(browser, user.username, user.password)
    token = await form_token(browser, "/profile")
    r = await browser.post("/logout", data={"csrf_token": token})
    assert r.status_code == 303 and r.headers["location"] == "/?notice=signed_out"
    home = await browser.get(r.headers["location"])
    assert "您已退出登录" in home.text and 'href="/login?next=' in home.text
    assert (await browser.get("/profile")).status_code == 303


async def test_profile_details_and_password(browser: httpx.AsyncClient, make_user) -> None:  # type: ignore[no-untyped-def]
    user = make_user("citizen")
    await sign_in(browser, user.username, user.password)
    token = await form_token(browser, "/profile")
    r = await browser.post("/profile", data={"csrf_token": token, "display_name": "张三丰",
                                             "email": "not-an-address"})
    assert r.status_code == 422 and "请输入有效的电子邮箱地址" in r.text
    assert 'aria-invalid="true"' in r.text
    r = await browser.post("/profile", data={"csrf_token": token, "display_name": "张三丰",
                                             "email": "zhang@example.cn"})
    assert r.status_code == 303
    page = await browser.get(r.headers["location"])
    assert "您的信息已保存" in page.text and 'value="张三丰"' in page.text

    r = await browser.post("/profile/password", data={"csrf_token": token, "current": "wrong-one",
                                                      "new": "new-password-1", "confirm": "new-password-1"})
    assert r.status_code == 422 and "当前密码不正确" in r.text
    r = await browser.post("/profile/password", data={"csrf_token": token, "current": user.password,
                                                      "new": "new-password-1", "confirm": "new-password-1"})
    assert r.status_code == 303
    page = await browser.get("/profile")  # the new session cookie keeps this browser signed in
    assert page.status_code == 200
    new_token = csrf_of(page.text)
    await browser.post("/logout", data={"csrf_token": new_token})
    assert (await sign_in(browser, user.username, "new-password-1")).status_code == 303


async def test_token_secret_is_shown_once(browser: httpx.AsyncClient, make_user) -> None:  # type: ignore[no-untyped-def]
    user = make_user("developer")
    await sign_in(browser, user.username, user.password)
    token = await form_token(browser, "/tokens")
    r = await browser.post("/tokens", data={"csrf_token": token, "name": "空气质量看板",
                                            "scopes": ["account", "plan.read"], "days": "30"})
    assert r.status_code == 201
    assert r.headers["cache-control"] == "no-store"
    secret = re.search(r'value="(cp_[A-Za-z0-9_-]+)"', r.text)
    assert secret, "the secret is on the result page"
    assert "只显示这一次" in r.text
    me = await browser.get("/api/v1/me", headers={"Authorization": f"Bearer {secret.group(1)}",
                                                  "Accept": "application/json"})
    assert me.status_code == 200 and me.json()["username"] == user.username

    listing = await browser.get("/tokens")
    assert secret.group(1) not in listing.text
    assert secret.group(1)[:11] in listing.text  # only the prefix (cp_ + 8) is shown again
    assert "空气质量看板" in listing.text

    token_id = re.search(r'action="/tokens/(\d+)/revoke"', listing.text)
    assert token_id
    r = await browser.post(f"/tokens/{token_id.group(1)}/revoke", data={"csrf_token": token})
    assert r.status_code == 303 and r.headers["location"] == "/tokens?notice=token_revoked"
    listing = await browser.get(r.headers["location"])
    assert "已撤销" in listing.text
    me = await browser.get("/api/v1/me", headers={"Authorization": f"Bearer {secret.group(1)}",
                                                  "Accept": "application/json"})
    assert me.status_code == 401


async def test_token_form_offers_and_accepts_only_the_roles_scopes(browser: httpx.AsyncClient, make_user) -> None:  # type: ignore[no-untyped-def]
    user = make_user("citizen")
    await sign_in(browser, user.username, user.password)
    page = await browser.get("/tokens")
    assert 'value="account"' in page.text and 'value="users.read"' not in page.text
    token = csrf_of(page.text)
    r = await browser.post("/tokens", data={"csrf_token": token, "name": "x", "scopes": ["users.read"],
                                            "days": "30"})
    assert r.status_code == 422 and "只能选择您的角色拥有的权限" in r.text
    r = await browser.post("/tokens", data={"csrf_token": token, "name": "", "days": "11"})
    assert r.status_code == 422
    for message in ("请输入1至100个字符的名称", "请至少选择一项权限", "请从提供的有效期中选择一项"):
        assert message in r.text


async def test_revoking_someone_elses_token_is_not_found(browser: httpx.AsyncClient, make_user, token_for) -> None:  # type: ignore[no-untyped-def]
    owner, other = make_user("developer"), make_user("developer")
    token_for(owner)
    await sign_in(browser, other.username, other.password)
    token = await form_token(browser, "/tokens")
    r = await browser.post("/tokens/1/revoke", data={"csrf_token": token})
    assert r.status_code == 404 and "页面不存在" in r.text

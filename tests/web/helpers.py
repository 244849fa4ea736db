"""Helpers for portal tests: read a page's CSRF token, sign in through the form."""

from __future__ import annotations

import re

import httpx

CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_of(html: str) -> str:
    """The CSRF token the page's forms post back."""
    found = CSRF_RE.search(html)
    assert found, "the page has no form with a csrf_token"
    return found.group(1)


async def form_token(client: httpx.AsyncClient, path: str = "/login") -> str:
    response = await client.get(path)
    assert response.status_code == 200, response.text[:500]
    return csrf_of(response.text)


async def sign_in(client: httpx.AsyncClient, username: str, password: str, next_path: str = "/profile"
                  ) -> httpx.Response:
    token = await form_token(client)
    return await client.post("/login", data={"csrf_token": token, "username": username, "password": password,
                                             "next": next_path})



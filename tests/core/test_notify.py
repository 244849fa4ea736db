"""Notifications: the in-app inbox, and mail delivered to a real SMTP server (aiosmtpd) on localhost."""

from __future__ import annotations

import email
from email.policy import default as default_policy

import pytest

from cityplus.core import notify
from cityplus.core.config import load_settings
from cityplus.core.errors import NotFound
from tests.servers import free_port


class Collecting:
    """aiosmtpd handler keeping every message it accepts."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], email.message.EmailMessage]] = []
        self.logins: list[str] = []

    async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]  # noqa: N802
        msg = email.message_from_bytes(envelope.content, policy=default_policy)
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), msg))
        return "250 OK"


@pytest.fixture
def smtp_server():  # type: ignore[no-untyped-def]
    from aiosmtpd.controller import Controller

    handler = Collecting()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield handler, port
    finally:
        controller.stop()


def test_mail_reaches_a_real_smtp_server(smtp_server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    handler, port = smtp_server
    settings = load_settings(var_dir=tmp_path, smtp_host="127.0.0.1", smtp_port=port,
                             smtp_from="plan-office@chengdu.example")
    sender = notify.SmtpSender(settings)
    sent = sender.send([notify.Mail("a@units.example", "到期提醒\r\nBcc: x@evil.example Reminder",
                                    "工作事项将于 2016-10-08 到期。"),
                        notify.Mail("b@units.example", "Second", "body")])
    assert sent == 2
    assert [m[1] for m in handler.messages] == [["a@units.example"], ["b@units.example"]]
    mail_from, _, msg = handler.messages[0]
    assert mail_from == "plan-office@chengdu.example"
    assert msg["Subject"] == "到期提醒 Bcc: x@evil.example Reminder"  # one header line, no injected header
    assert msg["Bcc"] is None
    assert "2016-10-08" in msg.get_content()


def test_mail_is_disabled_without_a_host(tmp_path) -> None:  # type: ignore[no-untyped-def]
    sender = notify.SmtpSender(load_settings(var_dir=tmp_path))
    assert not sender.enabled
    assert sender.send([notify.Mail("a@b.example", "s", "b")]) == 0


def test_inbox_is_per_user(ctx, make_user) -> None:  # type: ignore[no-untyped-def]
    alice, bob = make_user("citizen"), make_user("citizen")
    with ctx.db.session() as s:
        m = notify.post(s, alice.user_id, "test.hello", "Hello", "body", link="/plan")
        mid = m.id
    with ctx.db.session() as s:
        assert [x.subject for x in notify.inbox(s, alice.user_id)] == ["Hello"]
        assert notify.inbox(s, bob.user_id) == []
        assert notify.unread_count(s, alice.user_id) == 1
        with pytest.raises(NotFound):
            notify.mark_read(s, bob.user_id, mid)  # not bob's message
    with ctx.db.session() as s:
        notify.mark_read(s, alice.user_id, mid)
    with ctx.db.session() as s:
        assert notify.unread_count(s, alice.user_id) == 0
        assert notify.inbox(s, alice.user_id, unread_only=True) == []


async def test_inbox_api_and_page(ctx, client, make_user, token_for) -> None:  # type: ignore[no-untyped-def]
    alice, bob = make_user("department_staff", org="jxw"), make_user("citizen")
    with ctx.db.session() as s:
        mid = notify.post(s, alice.user_id, "plan.due_soon", "到期提醒", "工作事项 21.1 将于 2016-10-08 到期",
                          link="/plan/items/1").id
    r = await client.get("/api/v1/me/inbox", headers=token_for(alice))
    assert r.status_code == 200 and [m["subject"] for m in r.json()] == ["到期提醒"]
    assert r.json()[0]["read_at"] is None
    assert (await client.get("/api/v1/me/inbox", headers=token_for(bob))).json() == []
    r = await client.post(f"/api/v1/me/inbox/{mid}/read", headers=token_for(bob))
    assert r.status_code == 404
    r = await client.post(f"/api/v1/me/inbox/{mid}/read", headers=token_for(alice))
    assert r.status_code == 204
    r = await client.get("/api/v1/me/inbox", params={"unread": "true"}, headers=token_for(alice))
    assert r.json() == []
    assert (await client.get("/api/v1/me/inbox")).status_code == 401

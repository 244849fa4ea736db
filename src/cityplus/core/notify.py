"""Notifications (通知): an in-app inbox per user and e-mail through an SMTP relay.

The inbox is a core table written in the caller's transaction, so a message exists exactly when the change that
caused it committed. E-mail is sent with the standard library's smtplib (STARTTLS and login when configured) after
that commit; `SmtpSender` is disabled when CITYPLUS_SMTP_HOST is empty.
"""

from __future__ import annotations

import smtplib
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.utils import formataddr, make_msgid
from typing import Any, cast

import structlog
from sqlalchemy import CursorResult, ForeignKey, Integer, String, Text, func, select, update
from sqlalchemy.orm import Mapped, Session, mapped_column

from cityplus.core.config import Settings
from cityplus.core.db import Base, UTCDateTime, utcnow
from cityplus.core.errors import NotFound

log = structlog.get_logger("cityplus.notify")


class InboxMessage(Base):
    """A message in one user's in-app inbox (站内信)."""

    __tablename__ = "core_inbox_messages"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("core_users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    kind: Mapped[str] = mapped_column(String(64))  # e.g. plan.reminder_due
    subject: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text)
    link: Mapped[str | None] = mapped_column(String(500), nullable=True)
    read_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


def post(session: Session, user_id: int, kind: str, subject: str, body: str, link: str | None = None
         ) -> InboxMessage:
    """Put a message into a user's inbox (in the caller's transaction)."""
    msg = InboxMessage(user_id=user_id, kind=kind, subject=" ".join(subject.split())[:200], body=body, link=link)
    session.add(msg)
    session.flush()
    return msg


def inbox(session: Session, user_id: int, *, unread_only: bool = False, limit: int = 50) -> list[InboxMessage]:
    """A user's messages, newest first."""
    stmt = select(InboxMessage).where(InboxMessage.user_id == user_id)
    if unread_only:
        stmt = stmt.where(InboxMessage.read_at.is_(None))
    return list(session.scalars(stmt.order_by(InboxMessage.id.desc()).limit(limit)))


def unread_count(session: Session, user_id: int) -> int:
    """How many of a user's messages are unread."""
    return session.scalar(select(func.count()).select_from(InboxMessage)
                          .where(InboxMessage.user_id == user_id, InboxMessage.read_at.is_(None))) or 0


def mark_read(session: Session, user_id: int, message_id: int) -> None:
    """Mark one of the user's own messages read (another user's message is not found)."""
    result = session.execute(update(InboxMessage).where(InboxMessage.id == message_id,
                                                        InboxMessage.user_id == user_id)
                             .values(read_at=func.coalesce(InboxMessage.read_at, utcnow())))
    done = cast(CursorResult[Any], result).rowcount
    if not done:
        raise NotFound(f"you have no message {message_id}")


@dataclass(frozen=True)
class Mail:
    """One plain-text e-mail to one recipient."""

    to: str
    subject: str
    body: str


class SmtpSender:
    """Sends mail through the configured SMTP relay (CITYPLUS_SMTP_*)."""

    def __init__(self, settings: Settings) -> None:
        self.host = settings.smtp_host
        self.port = settings.smtp_port
        self.user = settings.smtp_user
        self.password = settings.smtp_password
        self.sender = settings.smtp_from
        self.starttls = settings.smtp_starttls
        self.timeout = 10.0

    @property
    def enabled(self) -> bool:
        """Whether a relay is configured."""
        return bool(self.host)

    def _message(self, mail: Mail) -> EmailMessage:
        msg = EmailMessage()
        msg["From"] = formataddr(("CityPlus", self.sender))
        msg["To"] = mail.to
        msg["Subject"] = " ".join(mail.subject.split())  # a header is one line, whatever the text held
        msg["Message-ID"] = make_msgid(domain=self.sender.rpartition("@")[2] or "cityplus.invalid")
        msg.set_content(mail.body)
        return msg

    def send(self, mails: list[Mail]) -> int:
        """Send the mails over one connection; returns how many the relay accepted (0 when disabled)."""
        if not self.enabled or not mails:
            return 0
        sent = 0
        with smtplib.SMTP(self.host, self.port, timeout=self.timeout) as smtp:
            if self.starttls:
                smtp.starttls()
            if self.user:
                smtp.login(self.user, self.password)
            for mail in mails:
                try:
                    smtp.send_message(self._message(mail))
                    sent += 1
                except smtplib.SMTPRecipientsRefused as exc:  # one bad address must not stop the others
                    log.warning("mail_refused", to=mail.to, error=str(exc)[:200])
        return sent

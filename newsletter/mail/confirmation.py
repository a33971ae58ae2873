"""The email that answers a sign-up (``templates/email/confirm.*``): composed here, with the
headers and the DKIM signature of the editions, so that :mod:`newsletter.subscribers` only
says what it links to."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

import premailer

from ..settings import Settings
from .dkim import DkimSigner
from .render import set_verbatim, template_environment


def confirmation_email(settings: Settings, email: str, context: dict) -> EmailMessage:
    """The confirmation (or "already subscribed") email to ``email``: its templates rendered
    with ``context`` (which has its ``subject``), the stylesheet inlined, signed with DKIM
    when that is on."""
    subject = context["subject"]
    env = template_environment()
    html = premailer.transform(
        env.get_template("email/confirm.html").render(context),
        keep_style_tags=True,
        cssutils_logging_level=logging.ERROR,
    )
    message = EmailMessage()
    message["Subject"] = subject
    message["From"] = settings.from_address
    message["To"] = Address(addr_spec=email)
    if settings.reply_to:
        message["Reply-To"] = settings.reply_to
    message["Date"] = format_datetime(datetime.now(UTC))
    message["Message-ID"] = make_msgid(domain=settings.sender_domain)
    message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no out-of-office replies
    message.set_content(env.get_template("email/confirm.txt").render(context))
    message.add_alternative(html, subtype="html")
    if dkim := DkimSigner.from_settings(settings):  # signed like the editions, for DMARC
        set_verbatim(message, "DKIM-Signature", dkim.signature(message))
    return message

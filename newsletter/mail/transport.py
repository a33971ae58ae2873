"""The transport the settings name, and whether mail may really go out from the sender.

The transports know nothing of the settings: each is made from a
:class:`~newsletter.transports.TransportConfig`, which :func:`transport_config` fills from
them. Every part that sends (the delivery loop, the confirmation emails, the web app, the
demo) gets its transport here.
"""

from __future__ import annotations

from ..settings import DEFAULT_FROM, Settings, SettingsError
from ..transports import Transport, TransportConfig, UnknownTransport, transport_from_config


def transport_config(url: str, settings: Settings) -> TransportConfig:
    """The config of the transport at ``url``, with the secrets the settings hold."""
    return TransportConfig(
        url, smtp_password=settings.smtp_password, relay_token=settings.relay_token
    )


def transport_from_url(url: str, settings: Settings) -> Transport:
    """The transport at ``url`` (see :func:`~newsletter.transports.transport_from_config`);
    SettingsError for a scheme no transport has."""
    try:
        return transport_from_config(transport_config(url, settings))
    except UnknownTransport as exc:
        raise SettingsError(str(exc)) from exc


def check_real_send(settings: Settings) -> None:
    if settings.from_address == DEFAULT_FROM or settings.sender_domain == "localhost":
        raise SettingsError(
            "NEWSLETTER_FROM is not set to a real address: mail servers reject mail from "
            f"{settings.sender_email}. Set it, e.g. NEWSLETTER_FROM='Daily Papers <papers@example.org>'"
        )

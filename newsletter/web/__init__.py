"""The web app behind the links in every email: subscribe, confirm, preferences, unsubscribe
and feedback, and the relays' bounce webhooks. A thin shell over
:mod:`newsletter.subscribers.subscriptions`.

An app on top: may import any stage below it (``subscribers``, ``sending.edition`` for the
previews, ``mail``, ``store``, the base modules), but not ``cli`` or ``demo``."""

from .app import create_app, serve

__all__ = ["create_app", "serve"]

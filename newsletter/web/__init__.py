"""The web app behind the links in every email: subscribe, confirm, preferences, unsubscribe
and feedback. A thin shell over :mod:`newsletter.subscribers.subscriptions`."""

from .app import create_app, serve

__all__ = ["create_app", "serve"]

"""Subscribers: the people and their profiles. ``profiles`` checks, adds, updates, imports
and exports subscribers (what the console does); ``subscriptions`` is what subscribers do
themselves (sign-up with double opt-in, confirmation, preferences, unsubscribe); ``bounces``
reads the relays' webhooks and suppresses the addresses that bounce or complain;
``bounce_mail`` reads what a message of the bounce mailbox says (DSN, ARF, ``flufl.bounce``)
and ``mailbox`` scans that mailbox (IMAP, Maildir, mbox) into the same rules.

May import the base modules, ``store``, ``mail`` and ``transports``; nothing of ``ranking``,
``sending`` or the apps (what an edition would pick is ``sending.edition``'s to say).
"""

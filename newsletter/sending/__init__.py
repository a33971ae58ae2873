"""Sending: getting each edition out once. ``edition`` plans an edition (candidates, ranking,
history); ``delivery`` is the loop that renders, claims and hands each batch of messages
to a transport, in the batches and over the connections the transport asks for
(``pacing``: caps and error storms; ``report``: what a run reports); ``ledger`` records
every message (its rules: the only code that changes the deliveries rows, through the
store's interface); ``schedule_rules`` says
when a subscriber's edition is due, ``worker`` runs the day, ``daily`` is one day's run
(ingest, then send), ``locking`` keeps to one sender per database (or shard), ``status``
reports.

May import everything below it: the base modules, ``sources``, ``store``, ``ranking``,
``mail``, ``subscribers`` and ``transports``; nothing of the apps (``cli``, ``web``, ``demo``).
"""

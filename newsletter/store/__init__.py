"""The store: the SQLite database (papers, subscribers, feedback, embeddings, the event log)
through sqlite-utils, its migrations, and ingest, where what the sources bring is merged into
it and reported.

May import the base modules (``models``, ``settings``, ``tokens``, ``fetch``) and ``sources``;
nothing of a later stage (ranking, mail, subscribers, sending, the apps).
"""

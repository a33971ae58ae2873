"""Ranking: which papers each subscriber gets, and why. ``engine`` is the ranker (TF-IDF
relevance, semantic blending, signals, rules, diversity, reasons) over records it is given;
``semantic`` is the optional sentence-embedding model and the vector arithmetic it needs.

May import the base modules (``models``, ``settings``) and ``store``; nothing of a later
stage (mail, subscribers, sending, the apps).
"""

"""The schema's history. Each migration runs once, in order, in one transaction,
tracked by ``PRAGMA user_version``. Add a new migration at the end; never edit an old one."""

from __future__ import annotations

import sqlite3

INITIAL_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT);

CREATE TABLE papers (
    id TEXT PRIMARY KEY,
    source TEXT,
    title TEXT NOT NULL,
    abstract TEXT NOT NULL,
    authors TEXT NOT NULL DEFAULT '[]',      -- JSON list
    categories TEXT NOT NULL DEFAULT '[]',   -- JSON list
    url TEXT,
    published_at TEXT,
    upvotes INTEGER,
    title_key TEXT NOT NULL,
    first_seen_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX idx_papers_first_seen ON papers (first_seen_at);
CREATE INDEX idx_papers_title_key ON papers (title_key);

CREATE TABLE subscribers (
    id INTEGER PRIMARY KEY,
    email TEXT NOT NULL UNIQUE COLLATE NOCASE,
    status TEXT NOT NULL,
    timezone TEXT NOT NULL,
    delivery_hour INTEGER NOT NULL,
    max_papers INTEGER NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    consent_at TEXT,
    consent_source TEXT,
    consent_ip TEXT,
    confirmed_at TEXT,
    unsubscribed_at TEXT
);
CREATE INDEX idx_subscribers_status ON subscribers (status);

CREATE TABLE profiles (
    subscriber_id INTEGER PRIMARY KEY REFERENCES subscribers (id) ON DELETE CASCADE,
    interests TEXT NOT NULL DEFAULT '',
    categories TEXT NOT NULL DEFAULT '[]',   -- JSON list
    muted_terms TEXT NOT NULL DEFAULT '[]',  -- JSON list
    updated_at TEXT NOT NULL
);

CREATE TABLE feedback (
    subscriber_id INTEGER NOT NULL REFERENCES subscribers (id) ON DELETE CASCADE,
    paper_id TEXT NOT NULL,
    signal INTEGER NOT NULL,                 -- +1 liked, -1 disliked
    created_at TEXT NOT NULL,
    PRIMARY KEY (subscriber_id, paper_id)
);

CREATE TABLE deliveries (
    id INTEGER PRIMARY KEY,
    edition TEXT NOT NULL,                   -- YYYY-MM-DD
    subscriber_id INTEGER NOT NULL REFERENCES subscribers (id) ON DELETE CASCADE,
    email TEXT NOT NULL,
    status TEXT NOT NULL,
    message_id TEXT NOT NULL,
    paper_ids TEXT NOT NULL DEFAULT '[]',    -- JSON list of paper ids, best first
    picks TEXT NOT NULL DEFAULT '[]',        -- JSON list of {id, score, reason}
    attempts INTEGER NOT NULL DEFAULT 0,
    send_count INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL,
    claimed_at TEXT,
    sent_at TEXT,
    updated_at TEXT NOT NULL,
    last_error TEXT,
    transport_id TEXT,
    UNIQUE (edition, subscriber_id)
);
CREATE INDEX idx_deliveries_subscriber ON deliveries (subscriber_id, status);

CREATE TABLE events (
    id INTEGER PRIMARY KEY,
    at TEXT NOT NULL,
    kind TEXT NOT NULL,
    subscriber_id INTEGER,
    edition TEXT,
    detail TEXT NOT NULL DEFAULT '{}'        -- JSON object
);
CREATE INDEX idx_events_at ON events (at);
"""

PAPER_EXTRA = """
ALTER TABLE papers ADD COLUMN extra TEXT NOT NULL DEFAULT '{}';  -- JSON object, per source
"""

SCHEDULE_AND_PROFILE = """
ALTER TABLE subscribers ADD COLUMN frequency TEXT NOT NULL DEFAULT 'daily';  -- daily | weekly
ALTER TABLE subscribers ADD COLUMN weekly_day INTEGER NOT NULL DEFAULT 0;    -- 0 = Monday
ALTER TABLE subscribers ADD COLUMN paused_until TEXT;                        -- YYYY-MM-DD
ALTER TABLE profiles ADD COLUMN followed_authors TEXT NOT NULL DEFAULT '[]'; -- JSON list
ALTER TABLE profiles ADD COLUMN categories_only INTEGER NOT NULL DEFAULT 0;  -- hard filter
"""

RATE_LIMITS = """
CREATE TABLE rate_limit_hits (
    key TEXT NOT NULL,                       -- what is limited, e.g. subscribe-ip:203.0.113.7
    at REAL NOT NULL                         -- Unix time of the request
);
CREATE INDEX idx_rate_limit_hits ON rate_limit_hits (key, at);
"""

EMBEDDINGS = """
CREATE TABLE paper_embeddings (
    paper_id TEXT PRIMARY KEY REFERENCES papers (id) ON DELETE CASCADE ON UPDATE CASCADE,
    model TEXT NOT NULL,
    text_hash TEXT NOT NULL,      -- of the text embedded: a changed abstract is embedded again
    vector BLOB NOT NULL          -- float32, L2-normalized
);
CREATE TABLE profile_embeddings (
    subscriber_id INTEGER PRIMARY KEY REFERENCES subscribers (id) ON DELETE CASCADE,
    model TEXT NOT NULL,
    text_hash TEXT NOT NULL,
    vector BLOB NOT NULL
);
"""

DELIVERY_RETRIES = """
ALTER TABLE deliveries ADD COLUMN next_attempt_at TEXT;  -- a failed message's next try
CREATE INDEX idx_deliveries_status ON deliveries (status, edition);
CREATE INDEX idx_events_subscriber ON events (subscriber_id, kind, at);
"""

DELIVERY_LEASES = """
ALTER TABLE deliveries ADD COLUMN lease_owner TEXT;       -- the process that last claimed it
ALTER TABLE deliveries ADD COLUMN lease_expires_at TEXT;  -- it holds a 'sending' row until then
"""

TRENDING_RANK = """
ALTER TABLE papers ADD COLUMN trending_rank INTEGER;  -- place on a trending page (1 = first)
"""

TRENDING_SECTION = """
ALTER TABLE subscribers ADD COLUMN trending_papers INTEGER;  -- "Trending today" size, NULL: the default
"""

BOUNCE_MAIL = """
CREATE TABLE processed_mail (
    message_id TEXT PRIMARY KEY,  -- of a message read from the bounce mailbox
    at TEXT NOT NULL,
    kind TEXT NOT NULL,           -- hard_bounce | soft_bounce | complaint | not_bounce | malformed
    email TEXT                    -- the recipient it names, if any
);
CREATE INDEX idx_events_edition ON events (edition, kind);
"""

MIGRATIONS: list[str] = [
    INITIAL_SCHEMA,
    PAPER_EXTRA,
    SCHEDULE_AND_PROFILE,
    RATE_LIMITS,
    EMBEDDINGS,
    DELIVERY_RETRIES,
    DELIVERY_LEASES,
    TRENDING_RANK,
    TRENDING_SECTION,
    BOUNCE_MAIL,
]
SCHEMA_VERSION = len(MIGRATIONS)


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the schema up to date; returns the number of migrations applied."""
    current = conn.execute("PRAGMA user_version").fetchone()[0]
    if current > SCHEMA_VERSION:
        raise RuntimeError(
            f"database schema version {current} is newer than this program's "
            f"({SCHEMA_VERSION}); upgrade newsletter"
        )
    for version in range(current, SCHEMA_VERSION):
        statements = [s for s in MIGRATIONS[version].split(";") if s.strip()]
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in statements:
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {version + 1}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    return SCHEMA_VERSION - current

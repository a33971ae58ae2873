"""The file outbox: each message becomes one RFC 5322 ``.eml`` file (plus an ``.html`` copy
of its HTML part, to open in a browser). Files are written atomically: a reader never sees
half a message."""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from email.message import EmailMessage
from email.policy import SMTP
from pathlib import Path
from urllib.parse import unquote, urlsplit

from . import OneAtATime, SendResult


class OutboxTransport(OneAtATime):
    delivers_mail = False

    def __init__(self, directory: Path):
        self.directory = directory

    @classmethod
    def from_url(cls, url: str) -> OutboxTransport:
        parts = urlsplit(url)
        return cls(Path(unquote(parts.netloc + parts.path) or "outbox").expanduser())

    def describe(self) -> str:
        return f"file outbox {self.directory}"

    def open(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)

    def send(self, message: EmailMessage) -> SendResult:
        folder = self.directory / _edition_of(message)
        folder.mkdir(parents=True, exist_ok=True)
        stem = _file_stem(message)
        try:
            _write_atomically(folder / f"{stem}.eml", message.as_bytes(policy=SMTP))
            html = message.get_body(("html",))
            if html is not None:
                _write_atomically(folder / f"{stem}.html", html.get_content().encode())
        except OSError as exc:
            return SendResult("failed", error=f"cannot write to the outbox: {exc}")
        return SendResult("sent", transport_id=str(folder / f"{stem}.eml"))


def _edition_of(message: EmailMessage) -> str:
    edition = message.get("X-Newsletter-Edition", "")
    return edition if re.fullmatch(r"\d{4}-\d{2}-\d{2}", edition) else "undated"


def _file_stem(message: EmailMessage) -> str:
    """The recipient's address, made safe for a file name, and a short digest of the
    Message-ID so that a forced resend does not overwrite the first copy."""
    recipient = re.sub(r"[^A-Za-z0-9@._+-]", "_", str(message.get("To", "unknown")))
    digest = hashlib.sha1(str(message.get("Message-ID", "")).encode()).hexdigest()[:8]
    return f"{recipient[-80:]}--{digest}"


def _write_atomically(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise

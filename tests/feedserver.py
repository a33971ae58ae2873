"""A real HTTP server on loopback for the feed and relay tests: serves the recorded fixtures
in ``tests/fixtures``, can be scripted to fail (5xx, 429 with Retry-After, slow, cut),
and keeps every request, POST bodies included."""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

FIXTURES = Path(__file__).resolve().parent / "fixtures"


@dataclass
class Reply:
    status: int = 200
    body: bytes = b"ok"
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    #: A Content-Length above the body's: the connection closes midway through the body.
    content_length: int | None = None


@dataclass
class Request:
    path: str
    headers: dict[str, str]
    method: str = "GET"
    body: bytes = b""

    def header(self, name: str) -> str | None:
        """A request header, whatever the case of its name."""
        return next((v for k, v in self.headers.items() if k.lower() == name.lower()), None)

    def json(self) -> Any:
        return json.loads(self.body)


class _Server(ThreadingHTTPServer):
    def handle_error(self, request, client_address) -> None:
        # A client that timed out has hung up before the slow reply: expected, not a failure.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


#: A scripted reply: as it is, or made for the request (outside the server's lock, so it
#: may take its time).
Scripted = Reply | Callable[[Request], Reply]


class FeedServer:
    """``/fixtures/<name>`` serves a fixture file; a scripted path serves its replies in
    turn, repeating the last one. Every request is recorded."""

    def __init__(self) -> None:
        self.scripts: dict[str, list[Scripted]] = {}
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        self.httpd = _Server(("127.0.0.1", 0), _handler(self))
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def script(self, path: str, *replies: Scripted) -> str:
        self.scripts[path] = list(replies)
        return self.url(path)

    def reply_for(
        self, path: str, headers: dict[str, str], method: str = "GET", body: bytes = b""
    ) -> Reply:
        request = Request(path, headers, method, body)
        with self._lock:
            self.requests.append(request)
            route = urlsplit(path).path
            script = self.scripts.get(route)
            reply = (script.pop(0) if len(script) > 1 else script[0]) if script else None
        if reply is not None:
            return reply(request) if callable(reply) else reply
        fixture = FIXTURES / route.removeprefix("/fixtures/")
        if route.startswith("/fixtures/") and fixture.is_file():
            return Reply(body=fixture.read_bytes(), headers={"Content-Type": "application/xml"})
        return Reply(404, b"no such page")


def _handler(server: FeedServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self._answer(b"")

        def do_POST(self) -> None:
            self._answer(self.rfile.read(int(self.headers.get("Content-Length", 0))))

        def _answer(self, body: bytes) -> None:
            reply = server.reply_for(self.path, dict(self.headers), self.command, body)
            time.sleep(reply.delay)
            self.send_response(reply.status)
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(reply.content_length or len(reply.body)))
            self.end_headers()
            self.wfile.write(reply.body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler

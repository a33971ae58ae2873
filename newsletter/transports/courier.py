"""A transport run in a process of its own: the courier.

A sender renders the next email while the current one is on the wire. With the SMTP
conversation in the same process, every answer of the server waits for the interpreter
lock that the rendering holds, and the server sits idle meanwhile (about a third of the
throughput lost). A courier is forked with everything already loaded, so it starts at
once; it talks to the server alone, and the sender hands it each sealed email's bytes
through a pipe and reads the answer back. It closes every file it inherited but its pipe
(the database, the sending lock), and ends when that pipe closes: when the sender closes
it, or dies, however it dies. A courier whose sender was killed finishes the message in
flight first; the next run finds that message unknown, as the ledger's rule has it.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
from email.message import EmailMessage
from multiprocessing.connection import Connection
from typing import Any

from . import OutgoingEmail, SendResult, Transport, TransportError


class Courier:
    """``transport`` (opened, used and closed) in a forked process."""

    def __init__(self, transport: Transport):
        self.transport = transport
        self.delivers_mail = transport.delivers_mail
        context = multiprocessing.get_context("fork")
        self.pipe, theirs = context.Pipe()
        self.process = context.Process(
            target=_serve, args=(transport, theirs), name="courier", daemon=True
        )
        self.process.start()
        theirs.close()

    def describe(self) -> str:
        return self.transport.describe()

    def open(self) -> None:
        self._ask("open", None)

    def send(self, message: EmailMessage) -> SendResult:
        self.post(message)
        return self.answer()

    def post(self, message: EmailMessage) -> None:
        """Hand ``message`` over, without waiting: :meth:`answer` reads what became of it."""
        if isinstance(message, OutgoingEmail) and message.wire:
            # The bytes and the envelope only: pickling the whole message costs more.
            sealed = (message.sender, message.recipient, message.wire, message.message_id)
            self.pipe.send(("sealed", sealed))
        else:
            self.pipe.send(("message", message))

    def answer(self) -> SendResult:
        try:
            failed, answer = self.pipe.recv()
        except EOFError:
            raise TransportError(f"the courier of {self.describe()} died") from None
        if failed:
            raise answer
        return answer

    def close(self) -> None:
        """Close the connection and end the process (if it is not gone already)."""
        try:
            with contextlib.suppress(OSError, TransportError):
                self._ask("close", None)
        finally:
            self.pipe.close()
            self.process.join(30)

    def _ask(self, request: str, payload: Any) -> Any:
        self.pipe.send((request, payload))
        return self.answer()


def _serve(transport: Transport, pipe: Connection) -> None:
    keep = pipe.fileno()
    os.closerange(3, keep)
    os.closerange(keep + 1, os.sysconf("SC_OPEN_MAX"))
    while True:
        try:
            request, payload = pipe.recv()
        except EOFError:  # the sender is gone
            return
        try:
            if request == "open":
                answer = transport.open()
            elif request == "close":
                answer = transport.close()
            else:
                answer = transport.send(_unpack(payload) if request == "sealed" else payload)
            pipe.send((False, answer))
        except Exception as exc:
            error = exc if isinstance(exc, TransportError) else TransportError(repr(exc))
            pipe.send((True, error))
        if request == "close":
            return


def _unpack(sealed: tuple[str, str, bytes, str]) -> OutgoingEmail:
    message = OutgoingEmail()
    message.sender, message.recipient, message.wire, message.message_id = sealed
    return message

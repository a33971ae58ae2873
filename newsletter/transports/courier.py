"""A transport's connection run in a process of its own: the courier.

The connection of the SMTP transport. A sender renders the next email while the current
one is on the wire. With the SMTP
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
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from email.message import EmailMessage
from multiprocessing.connection import Connection as Pipe
from typing import Any

from . import OutgoingEmail, SendResult, Transport, TransportError, send_many


class Courier:
    """A connection of ``transport`` (opened, used and closed) in a forked process. The
    sender hands each batch over through the pipe, in its own thread and at once: a thread
    would first have to wait for the interpreter lock, which the sender holds while it
    renders the next email. A thread of the courier's own waits for the answers."""

    def __init__(self, transport: Transport):
        self.name = transport.describe()
        context = multiprocessing.get_context("fork")
        self.pipe, theirs = context.Pipe()
        self.process = context.Process(
            target=_serve, args=(transport, theirs), name="courier", daemon=True
        )
        self.process.start()
        theirs.close()
        self._answers = ThreadPoolExecutor(max_workers=1, thread_name_prefix="courier")

    def hand_over(self, messages: Sequence[EmailMessage]) -> Future[list[SendResult]]:
        try:
            self.pipe.send(("send", [_pack(m) for m in messages]))
        except OSError as exc:  # the courier is gone: so is its connection
            failed: Future[list[SendResult]] = Future()
            failed.set_exception(TransportError(f"the courier of {self.name} died: {exc}"))
            return failed
        return self._answers.submit(self._answer)

    def _answer(self) -> Any:
        try:
            failed, answer = self.pipe.recv()
        except EOFError:
            raise TransportError(f"the courier of {self.name} died") from None
        if failed:
            raise answer
        return answer

    def close(self) -> None:
        """Close the connection and end the process (if it is not gone already)."""
        self._answers.shutdown(wait=True)
        try:
            with contextlib.suppress(OSError, TransportError):
                self.pipe.send(("close", None))
                self._answer()
        finally:
            self.pipe.close()
            self.process.join(30)


def _serve(transport: Transport, pipe: Pipe) -> None:
    keep = pipe.fileno()
    os.closerange(3, keep)
    os.closerange(keep + 1, os.sysconf("SC_OPEN_MAX"))
    while True:
        try:
            request, payload = pipe.recv()
        except EOFError:  # the sender is gone
            return
        try:
            answer: list[SendResult] | None = None
            if request == "close":
                transport.close()
            else:
                answer = send_many(transport, [_unpack(item) for item in payload])
            pipe.send((False, answer))
        except Exception as exc:
            error = exc if isinstance(exc, TransportError) else TransportError(repr(exc))
            pipe.send((True, error))
        if request == "close":
            return


Packed = tuple[str, Any]


def _pack(message: EmailMessage) -> Packed:
    """A sealed email as its envelope and bytes only: pickling the whole message costs
    more."""
    if isinstance(message, OutgoingEmail) and message.wire:
        return "sealed", (message.sender, message.recipient, message.wire, message.message_id)
    return "message", message


def _unpack(item: Packed) -> EmailMessage:
    kind, payload = item
    if kind == "message":
        return payload
    message = OutgoingEmail()
    message.sender, message.recipient, message.wire, message.message_id = payload
    return message

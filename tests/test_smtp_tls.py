"""The SMTP transport against real TLS servers on loopback: STARTTLS with a login, implicit
TLS (smtps), and certificate verification."""

from __future__ import annotations

import email
import email.policy
import ssl
from collections.abc import Iterator
from email.message import EmailMessage
from urllib.parse import quote

import pytest
import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from newsletter.transports import TransportError
from newsletter.transports.smtp import SMTPTransport

from .conftest import Mailbox, _Collector, free_port


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def cafile(ca: trustme.CA, tmp_path) -> str:
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


def _server_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    return context


#: A password with every character that has a meaning in a URL.
SPECIAL_PASSWORD = "S3cr/et#Pa?ss@w:rd%[]"


def _authenticator(server, session, envelope, mechanism, auth_data):
    logins = [(b"mailer", b"s3cret"), (b"mailer", SPECIAL_PASSWORD.encode())]
    ok = isinstance(auth_data, LoginPassword) and tuple(auth_data) in logins
    return AuthResult(success=ok, handled=False)


@pytest.fixture
def starttls_server(ca) -> Iterator[Mailbox]:
    """Requires STARTTLS before anything else, and a login over TLS."""
    box = Mailbox("127.0.0.1", free_port())
    controller = Controller(
        _Collector(box),
        hostname=box.host,
        port=box.port,
        tls_context=_server_context(ca),
        require_starttls=True,
        authenticator=_authenticator,
        auth_require_tls=True,
    )
    controller.start()
    yield box
    controller.stop()


@pytest.fixture
def smtps_server(ca) -> Iterator[Mailbox]:
    box = Mailbox("127.0.0.1", free_port())
    controller = Controller(
        _Collector(box),
        hostname=box.host,
        port=box.port,
        ssl_context=_server_context(ca),
        authenticator=_authenticator,
        auth_require_tls=False,
    )
    controller.start()
    yield box
    controller.stop()


def _message(to: str = "ada@example.org") -> EmailMessage:
    message = EmailMessage()
    message["From"] = "papers@example.org"
    message["To"] = to
    message["Subject"] = "Fréchet and Schrödinger"
    message.set_content("Hello")
    return message


def test_starttls_upgrade_then_login_then_send(starttls_server, cafile):
    url = f"smtp://mailer@127.0.0.1:{starttls_server.port}?cafile={cafile}"
    transport = SMTPTransport.from_url(url, password="s3cret")
    with transport:
        assert isinstance(transport.connection.sock, ssl.SSLSocket)
        results = [transport.send(_message(f"r{i}@example.org")) for i in range(3)]
    assert [r.status for r in results] == ["sent"] * 3
    received = [
        email.message_from_bytes(e.original_content, policy=email.policy.default)
        for e in starttls_server.envelopes
    ]
    assert [m["To"] for m in received] == ["r0@example.org", "r1@example.org", "r2@example.org"]
    assert received[0]["Subject"] == "Fréchet and Schrödinger"


def test_a_percent_encoded_password_in_the_url_is_decoded_for_the_login(starttls_server, cafile):
    password = quote(SPECIAL_PASSWORD, safe="")  # as the README shows
    url = f"smtp://mailer:{password}@127.0.0.1:{starttls_server.port}?cafile={cafile}"
    with SMTPTransport.from_url(url) as transport:
        assert transport.send(_message()).status == "sent"
    assert len(starttls_server.envelopes) == 1


def test_wrong_password_is_a_clear_transport_error(starttls_server, cafile):
    transport = SMTPTransport.from_url(
        f"smtp://mailer@127.0.0.1:{starttls_server.port}?cafile={cafile}&timeout=3",
        password="wrong",
    )
    with pytest.raises(TransportError, match="535"):
        transport.open()
    assert starttls_server.envelopes == []


def test_untrusted_certificate_is_refused(starttls_server):
    transport = SMTPTransport.from_url(
        f"smtp://mailer@127.0.0.1:{starttls_server.port}", password="s3cret"
    )
    with pytest.raises(TransportError, match="CERTIFICATE_VERIFY_FAILED"):
        transport.open()


def test_smtps_is_tls_from_the_first_byte(smtps_server, cafile):
    transport = SMTPTransport.from_url(
        f"smtps://mailer@127.0.0.1:{smtps_server.port}?cafile={cafile}", password="s3cret"
    )
    with transport:
        result = transport.send(_message())
    assert result.status == "sent"
    assert len(smtps_server.envelopes) == 1


def test_refused_recipient_is_rejected_and_the_connection_goes_on():
    class Refusing(_Collector):
        async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
            if address.startswith("bad"):
                return "550 5.1.1 no such user"
            envelope.rcpt_tos.append(address)
            return "250 OK"

    box = Mailbox("127.0.0.1", free_port())
    controller = Controller(Refusing(box), hostname=box.host, port=box.port)
    controller.start()
    try:
        with SMTPTransport.from_url(box.url) as transport:
            bad = transport.send(_message("bad@example.org"))
            good = transport.send(_message("good@example.org"))
    finally:
        controller.stop()
    assert bad.status == "rejected" and "550" in bad.error
    assert good.status == "sent"
    assert [e.rcpt_tos for e in box.envelopes] == [["good@example.org"]]

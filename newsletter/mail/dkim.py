"""Optional DKIM signing of each message (dkimpy), when a selector and a key are configured.

At volume, signing at the MTA or relay (OpenDKIM, or the provider's own) is usually better:
the key stays on one hardened host and the signature covers the message exactly as it
leaves. Signing here is for a setup that hands mail to a relay that does not sign.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from email.message import EmailMessage
from email.policy import SMTP
from pathlib import Path

import dkim
from dkim.crypto import UnparsableKeyError, parse_pem_private_key

from ..settings import Settings, SettingsError

#: Signed one extra time (RFC 6376 section 5.4.2): a relay cannot add a second instance of
#: these without breaking the signature. dkimpy's defaults sign ``List-Unsubscribe`` but
#: not ``List-Unsubscribe-Post``, which one-click unsubscription (RFC 8058) needs signed.
OVERSIGNED = (b"from", b"subject", b"list-unsubscribe", b"list-unsubscribe-post")


@dataclass(frozen=True)
class DkimSigner:
    selector: str
    domain: str
    private_key: bytes = field(repr=False)

    @classmethod
    def from_settings(cls, settings: Settings) -> DkimSigner | None:
        """The signer the settings ask for, or None when DKIM is off. A key that cannot be
        read stops the run here, before any message is claimed."""
        if not settings.dkim_selector:
            return None
        path = Path(settings.dkim_key_path).expanduser()
        try:
            key = path.read_bytes()
        except OSError as exc:
            raise SettingsError(f"cannot read the DKIM key {path}: {exc.strerror}") from exc
        try:
            parse_pem_private_key(key)
        except UnparsableKeyError as exc:
            raise SettingsError(f"{path} is not an RSA private key in PEM format") from exc
        return cls(settings.dkim_selector, settings.dkim_domain or settings.sender_domain, key)

    def signature(self, message: EmailMessage) -> str:
        """The value of the ``DKIM-Signature`` header for ``message`` as it stands, signed over
        its bytes as the transports send them (CRLF line ends), with relaxed
        canonicalization, folded as dkimpy folds it (``\\r\\n`` and a space)."""
        signer = dkim.DKIM(message.as_bytes(policy=SMTP))
        signer.add_frozen(OVERSIGNED)
        header = signer.sign(
            self.selector.encode(),
            self.domain.encode(),
            self.private_key,
            canonicalize=(b"relaxed", b"relaxed"),
        )
        return header.decode("ascii").partition(":")[2].strip()

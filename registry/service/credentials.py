"""Peer and mirror credentials at rest.

They must stay usable (the node sends them to the peer or mirror), so unlike the node's own
tokens they cannot be hashed. With a credentials key configured they are stored sealed:
Fernet (AES-128-CBC with HMAC-SHA256) under a key derived from the configured one by
HKDF-SHA256, as `fernet:<token>`; without one they are stored as given. Either way they are
never shown back, and a database dump alone does not reveal them once a key is set.
"""

from __future__ import annotations

import base64

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from registry.settings import Settings

SEALED = "fernet:"
KEY_SETTING = "MODELYARD_CREDENTIALS_KEY"


class CredentialsKeyError(ValueError):
    """A stored credential cannot be opened with the configured key (or with none)."""


def _fernet(key: str) -> Fernet:
    derived = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=b"modelyard credentials"
    ).derive(key.encode())
    return Fernet(base64.urlsafe_b64encode(derived))


class CredentialBox:
    def __init__(self, key: str | None) -> None:
        self._fernet = _fernet(key) if key else None

    def seal(self, secret: str | None) -> str | None:
        """What to store for `secret`: sealed when a key is configured."""
        if not secret or self._fernet is None:
            return secret
        return SEALED + self._fernet.encrypt(secret.encode()).decode()

    def unseal(self, stored: str | None, owner: str) -> str | None:
        """The credential a stored value holds.

        Raises:
            CredentialsKeyError: it is sealed, and no key or another key is configured.
        """
        if not stored or not stored.startswith(SEALED):
            return stored
        if self._fernet is None:
            raise CredentialsKeyError(
                f"The credential of {owner} is stored encrypted: set {KEY_SETTING}"
            )
        try:
            return self._fernet.decrypt(stored.removeprefix(SEALED).encode()).decode()
        except InvalidToken:
            raise CredentialsKeyError(
                f"{KEY_SETTING} does not open the stored credential of {owner}: "
                "it was sealed with another key"
            ) from None

    def reseal(self, stored: str | None, owner: str) -> str | None:
        """The value to store instead of `stored`, or None when it is right as it is: a
        credential kept as given is sealed once a key is configured. Checks that it opens."""
        secret = self.unseal(stored, owner)
        if self._fernet is None or not secret or stored != secret:
            return None
        return self.seal(secret)


def credential_box(settings: Settings) -> CredentialBox:
    """How this node stores peer and mirror tokens: sealed with its key, if it has one."""
    key = settings.credentials_key
    return CredentialBox(key.get_secret_value() if key else None)

"""Public keys and passwords of SFTP accounts: which keys are accepted, fingerprints, slow password hashes.

Accepted keys: ed25519, ECDSA (nistp256/384/521) and RSA of at least 3072 bits. Passwords are hashed with
argon2id (argon2-cffi's defaults); a login for an unknown account still spends one verification, so the
answer time does not tell which account names exist.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
from dataclasses import dataclass

import paramiko
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

MIN_RSA_BITS = 3072
KEY_TYPES = (
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "ssh-rsa",
)
MIN_PASSWORD_LENGTH = 12

_hasher = PasswordHasher()


@functools.cache
def _dummy_hash() -> str:
    """Made once, on the first login attempt for an unknown account (not at import: it is slow on purpose)."""
    return _hasher.hash("not a password of any account")


class PublicKeyError(ValueError):
    """A public key that is malformed or not accepted (type, size)."""


@dataclass(frozen=True)
class PublicKey:
    key_type: str
    key_data: str  # base64 of the blob, as in an authorized_keys line
    bits: int
    comment: str | None

    @property
    def fingerprint(self) -> str:
        return fingerprint_of(base64.b64decode(self.key_data))


def fingerprint_of(blob: bytes) -> str:
    """``SHA256:…`` as ``ssh-keygen -l`` prints it."""
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode("ascii").rstrip("=")


def parse_public_key(line: str) -> PublicKey:
    """One ``TYPE BASE64 [COMMENT]`` line (an ``.pub`` file or an authorized_keys entry without options)."""
    parts = line.strip().split(None, 2)
    if len(parts) < 2:
        raise PublicKeyError("not a public key line (expected 'TYPE BASE64 [COMMENT]')")
    key_type, data = parts[0], parts[1]
    if key_type not in KEY_TYPES:
        raise PublicKeyError(
            f"key type {key_type!r} is not accepted (use ed25519, ECDSA or RSA >= {MIN_RSA_BITS} bits)"
        )
    try:
        blob = base64.b64decode(data, validate=True)
        key = paramiko.PKey.from_type_string(key_type, blob)
    except (binascii.Error, paramiko.SSHException, ValueError, TypeError) as exc:
        raise PublicKeyError(f"the {key_type} key cannot be read: {exc}") from exc
    bits = key.get_bits()
    if key_type == "ssh-rsa" and bits < MIN_RSA_BITS:
        raise PublicKeyError(f"an RSA key of {bits} bits is too short; at least {MIN_RSA_BITS} bits are required")
    return PublicKey(key_type, data, bits, parts[2].strip() if len(parts) > 2 else None)


def key_matches(offered: paramiko.PKey, key_type: str, key_data: str) -> bool:
    """The offered key is this stored key (the blob decides; RSA signature variants share one blob)."""
    return offered.asbytes() == base64.b64decode(key_data) and _base_type(offered) == key_type


def _base_type(key: paramiko.PKey) -> str:
    name = key.get_name()
    return "ssh-rsa" if name in ("rsa-sha2-256", "rsa-sha2-512") else name


def hash_password(password: str) -> str:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValueError(f"a password must have at least {MIN_PASSWORD_LENGTH} characters")
    return _hasher.hash(password)


def verify_password(stored_hash: str | None, password: str) -> bool:
    """True when ``password`` matches; with no stored hash a dummy verification keeps the timing the same."""
    try:
        return _hasher.verify(stored_hash or _dummy_hash(), password) and stored_hash is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False

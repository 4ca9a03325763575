"""OpenSSH public key lines: validation and SHA256 fingerprints, as `ssh-keygen -l` prints them."""

from __future__ import annotations

import base64
import binascii
import hashlib
import struct

from paas.errors import KeyInvalidError

KEY_TYPES = frozenset(
    {
        "ssh-ed25519",
        "ssh-rsa",
        "ecdsa-sha2-nistp256",
        "ecdsa-sha2-nistp384",
        "ecdsa-sha2-nistp521",
        "sk-ssh-ed25519@openssh.com",
        "sk-ecdsa-sha2-nistp256@openssh.com",
    }
)


def fingerprint(blob: bytes) -> str:
    digest = hashlib.sha256(blob).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def parse_public_key(text: str) -> tuple[str, bytes]:
    """Return (type, blob) of one OpenSSH public key line, or raise KeyInvalidError."""
    lines = [ln for ln in text.strip().splitlines() if ln.strip() and not ln.startswith("#")]
    if len(lines) != 1:
        raise KeyInvalidError("expected exactly one public key line")
    parts = lines[0].split()
    if len(parts) < 2 or parts[0] not in KEY_TYPES:
        raise KeyInvalidError("not an OpenSSH public key (expected 'ssh-ed25519 AAAA...' or similar)")
    try:
        blob = base64.b64decode(parts[1], validate=True)
    except (binascii.Error, ValueError):
        raise KeyInvalidError("the key's base64 data is malformed") from None
    if len(blob) < 4:
        raise KeyInvalidError("the key's data is truncated")
    (length,) = struct.unpack(">I", blob[:4])
    if blob[4 : 4 + length].decode(errors="replace") != parts[0]:
        raise KeyInvalidError("the key's data does not match its type")
    return parts[0], blob

"""API keys: random, shown once, stored as sha256(salt + key), checked in constant time.

A key looks like ``ck_<prefix>_<secret>``; the prefix finds the row, the hash proves the key.
The secret carries 256 random bits, so a fast hash is enough (slow hashes guard guessable
passwords, and would cost every write request milliseconds).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from sqlalchemy import select
from sqlalchemy.orm import Session

from collabkit.serve.store import ROLES, ApiKey

RANK = {"reader": 0, "writer": 1, "admin": 2}  # an admin key may do what a writer key may


def _digest(salt: str, key: str) -> str:
    return hashlib.sha256((salt + key).encode()).hexdigest()


def create_key(session: Session, role: str) -> str:
    """Store a new key of ``role`` (writer or admin) and return it: the only time it is shown."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
    prefix, salt = secrets.token_hex(6), secrets.token_hex(16)
    key = f"ck_{prefix}_{secrets.token_urlsafe(32)}"
    session.add(ApiKey(prefix=prefix, salt=salt, hash=_digest(salt, key), role=role))
    session.commit()
    return key


def key_role(session: Session, key: str) -> str | None:
    """The role of ``key``, or None when it is not a valid key."""
    parts = key.split("_", 2)  # the secret may itself contain "_"
    if len(parts) != 3 or parts[0] != "ck" or len(key) > 200:
        return None
    row = session.scalar(select(ApiKey).where(ApiKey.prefix == parts[1]))
    if row is None:
        _digest("x" * 32, key)  # same work either way: no timing hint that a prefix exists
        return None
    return row.role if hmac.compare_digest(row.hash, _digest(row.salt, key)) else None


def allows(role: str | None, needed: str) -> bool:
    return role is not None and RANK[role] >= RANK[needed]

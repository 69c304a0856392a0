"""Who a request is, and what it may hold: server-issued session tokens and per-session slots.

A session token is issued by the server only: a 128-bit random id and an HMAC-SHA256 of it under
a server secret (SESSION_SECRET, else a file made once in DATA_DIR), so the server recognises its
own tokens without keeping a list, and a client-chosen or edited string is refused before any
store is read. Workers never check tokens: the job store only ever sees their hashes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import threading
from collections import Counter
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional

ID_BYTES = 16  # 128 bits of randomness per session
MAC_BYTES = 16  # the HMAC, truncated: 128 bits are beyond guessing
SECRET_FILE = "session_tokens.secret"
UNKNOWN_TOKEN = "unknown session token: submit a batch to get one"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class SessionTokens:
    """Issues tokens ("<id>.<mac>", URL-safe) and tells the server's own from any other string."""

    def __init__(self, secret: bytes):
        if len(secret) < 32:
            raise ValueError("the session secret must be at least 32 bytes")
        self._secret = secret

    def _mac(self, token_id: str) -> str:
        return _b64(hmac.new(self._secret, token_id.encode(), hashlib.sha256).digest()[:MAC_BYTES])

    def issue(self) -> str:
        token_id = _b64(secrets.token_bytes(ID_BYTES))
        return f"{token_id}.{self._mac(token_id)}"

    def valid(self, token: Optional[str]) -> bool:
        """Whether the server issued this token (a constant-time comparison of the MAC)."""
        token_id, dot, mac = (token or "").strip().partition(".")
        if not dot or len(token_id) != len(_b64(bytes(ID_BYTES))):
            return False
        return hmac.compare_digest(mac.encode(), self._mac(token_id).encode())

    def check(self, token: Optional[str]) -> str:
        """The token, stripped, or PermissionError with a message for the user."""
        if not token or not token.strip():
            raise PermissionError("no session token: submit a batch first, and pass the token it returned")
        if not self.valid(token):
            raise PermissionError(UNKNOWN_TOKEN)
        return token.strip()


def session_secret(configured: str, data_dir: Path) -> bytes:
    """SESSION_SECRET when set, else the secret in data_dir (made on first use, readable by the
    owner only): it must outlive restarts, or every session's token would stop working."""
    if configured:
        return configured.encode()
    path = Path(data_dir) / SECRET_FILE
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        fresh = path.with_suffix(f".{secrets.token_hex(4)}.tmp")
        fresh.write_text(secrets.token_urlsafe(48))
        fresh.chmod(0o600)
        try:  # two servers starting at once on one data_dir agree on the first secret written
            os.link(fresh, path)
        except FileExistsError:
            pass
        finally:
            fresh.unlink()
    return path.read_text().strip().encode()


class LimitReached(RuntimeError):
    """A bound on what a session (or everyone) may hold at once; str() is a message for the user."""


class SessionSlots:
    """At most `per_session` concurrent holders per session and `total` in all (thread-safe).
    A holder takes a slot with ``hold(key)`` and gives it back when the block ends, however it ends."""

    def __init__(self, per_session: int, total: int, what: str = "watchers"):
        self.per_session, self.total, self.what = per_session, total, what
        self._held: Counter[str] = Counter()
        self._lock = threading.Lock()

    def acquire(self, key: str) -> None:
        with self._lock:
            if self._held[key] >= self.per_session:
                raise LimitReached(
                    f"this session already has {self._held[key]} {self.what} open (the limit is {self.per_session}): "
                    "close one first"
                )
            if sum(self._held.values()) >= self.total:
                raise LimitReached(f"the server has {self.total} {self.what} open, its limit: try again shortly")
            self._held[key] += 1

    def release(self, key: str) -> None:
        with self._lock:
            if self._held[key] <= 1:
                del self._held[key]
            else:
                self._held[key] -= 1

    def held(self, key: Optional[str] = None) -> int:
        with self._lock:
            return sum(self._held.values()) if key is None else self._held[key]

    @contextmanager
    def hold(self, key: str) -> Iterator[None]:
        self.acquire(key)
        try:
            yield
        finally:
            self.release(key)

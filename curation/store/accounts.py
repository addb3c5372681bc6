"""The AccountStore seam: editors, their bearer tokens (hashed) and desk sessions, behind one Protocol.

SQLiteStore implements it through AccountsMixin; a Redis backend implements the same methods.
Tests in tests/test_accounts_store.py are written against the Protocol.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Protocol, runtime_checkable

RoleName = Literal["admin", "editor"]
ROLES: tuple[RoleName, ...] = ("admin", "editor")


@dataclass(frozen=True, slots=True)
class EditorRecord:
    name: str
    #: an encoded scrypt hash (curation.auth.hash_password), never the password
    password_hash: str
    role: RoleName
    created_at: datetime
    disabled: bool = False


@dataclass(frozen=True, slots=True)
class TokenRecord:
    #: SHA-256 hex of the token (curation.auth.token_hash): the token itself was shown once and is kept nowhere
    token_hash: str
    name: str
    created_at: datetime
    last_used_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class SessionRecord:
    id: str
    name: str
    #: the per-session CSRF token every state-changing desk request must echo
    csrf: str
    created_at: datetime
    expires_at: datetime


@runtime_checkable
class AccountStore(Protocol):
    async def put_editor(self, name: str, password_hash: str, role: RoleName, *, now: datetime) -> bool:
        """Create the editor, or update the password and role of an existing one (enabling it again).

        Returns True when the editor was created, False when it existed and was updated.
        """
        ...

    async def get_editor(self, name: str) -> EditorRecord | None: ...

    async def list_editors(self) -> list[EditorRecord]:
        """Every editor, by name."""
        ...

    async def set_editor_disabled(self, name: str, disabled: bool) -> bool:
        """Returns False when there is no such editor."""
        ...

    async def add_token(self, name: str, token_hash: str, *, now: datetime) -> None:
        """Remember a bearer token of an existing editor by its hash (the token itself is never stored).

        Raises:
            LookupError: no editor has that name.
        """
        ...

    async def editor_for_token(self, token_hash: str, *, now: datetime) -> EditorRecord | None:
        """The editor a token hash belongs to (disabled or not), noting the token's last use
        (to the minute: a backend may skip the write when the last one is recent)."""
        ...

    async def list_tokens(self, name: str) -> list[TokenRecord]:
        """The editor's tokens, oldest first."""
        ...

    async def delete_token(self, token_hash: str) -> bool:
        """Revoke a token; False when there was none with that hash."""
        ...

    async def add_session(self, session: SessionRecord) -> None: ...

    async def get_session(self, session_id: str) -> SessionRecord | None:
        """The session, expired or not: the caller decides by its clock."""
        ...

    async def delete_session(self, session_id: str) -> None: ...

    async def delete_sessions_of(self, name: str) -> int:
        """Log an editor out everywhere; returns how many sessions ended."""
        ...

    async def delete_expired_sessions(self, now: datetime) -> int: ...


def accounts_of(store: object) -> AccountStore:
    """The store's AccountStore side (SQLiteStore has one).

    Raises:
        TypeError: this backend keeps no editor accounts.
    """
    if not isinstance(store, AccountStore):
        raise TypeError(f"{type(store).__name__} keeps no editor accounts")
    return store

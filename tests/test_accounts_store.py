"""The AccountStore contract (editors, hashed tokens, sessions), run against every backend through the Protocol."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from curation.store import Store, open_store
from curation.store.accounts import AccountStore, SessionRecord, accounts_of
from tests.conftest import T0


def _accounts(store: Store) -> AccountStore:
    return accounts_of(store)


def _session(session_id: str, name: str, *, hours: float = 12) -> SessionRecord:
    return SessionRecord(
        id=session_id, name=name, csrf=f"csrf-{session_id}", created_at=T0, expires_at=T0 + timedelta(hours=hours)
    )


@pytest.mark.asyncio
async def test_put_editor_creates_then_updates_password_and_role(store: Store) -> None:
    accounts = _accounts(store)
    assert await accounts.get_editor("alice") is None
    assert await accounts.put_editor("alice", "hash-1", "editor", now=T0) is True
    await accounts.set_editor_disabled("alice", True)

    assert await accounts.put_editor("alice", "hash-2", "admin", now=T0 + timedelta(days=1)) is False
    alice = await accounts.get_editor("alice")
    assert alice is not None
    assert (alice.password_hash, alice.role, alice.disabled) == ("hash-2", "admin", False)
    assert alice.created_at == T0  # an update keeps the creation time


@pytest.mark.asyncio
async def test_list_editors_by_name_and_disable(store: Store) -> None:
    accounts = _accounts(store)
    for name in ("zoe", "alice", "marc"):
        await accounts.put_editor(name, f"hash-{name}", "editor", now=T0)
    assert [e.name for e in await accounts.list_editors()] == ["alice", "marc", "zoe"]

    assert await accounts.set_editor_disabled("marc", True) is True
    assert await accounts.set_editor_disabled("nobody", True) is False
    marc = await accounts.get_editor("marc")
    assert marc is not None and marc.disabled


@pytest.mark.asyncio
async def test_unknown_role_refused(store: Store) -> None:
    with pytest.raises(ValueError, match="role"):
        await _accounts(store).put_editor("alice", "h", "owner", now=T0)  # type: ignore[arg-type]


@pytest.mark.asyncio
async def test_tokens_by_hash_note_last_use_and_can_be_revoked(store: Store) -> None:
    accounts = _accounts(store)
    await accounts.put_editor("alice", "h", "admin", now=T0)
    with pytest.raises(LookupError, match="bob"):
        await accounts.add_token("bob", "a" * 64, now=T0)
    await accounts.add_token("alice", "a" * 64, now=T0)

    assert await accounts.editor_for_token("b" * 64, now=T0) is None
    used_at = T0 + timedelta(hours=1)
    editor = await accounts.editor_for_token("a" * 64, now=used_at)
    assert editor is not None and (editor.name, editor.role) == ("alice", "admin")
    [token] = await accounts.list_tokens("alice")
    assert token.token_hash == "a" * 64 and token.last_used_at == used_at

    assert await accounts.delete_token("a" * 64) is True
    assert await accounts.editor_for_token("a" * 64, now=used_at) is None
    assert await accounts.delete_token("a" * 64) is False


@pytest.mark.asyncio
async def test_token_of_a_disabled_editor_says_so(store: Store) -> None:
    accounts = _accounts(store)
    await accounts.put_editor("alice", "h", "editor", now=T0)
    await accounts.add_token("alice", "c" * 64, now=T0)
    await accounts.set_editor_disabled("alice", True)
    editor = await accounts.editor_for_token("c" * 64, now=T0)
    assert editor is not None and editor.disabled  # the caller refuses it


@pytest.mark.asyncio
async def test_sessions_add_get_delete(store: Store) -> None:
    accounts = _accounts(store)
    await accounts.put_editor("alice", "h", "editor", now=T0)
    await accounts.add_session(_session("s1", "alice"))
    await accounts.add_session(_session("s2", "alice"))
    await accounts.add_session(_session("s3", "bob"))

    assert await accounts.get_session("s1") == _session("s1", "alice")
    await accounts.delete_session("s1")
    assert await accounts.get_session("s1") is None

    assert await accounts.delete_sessions_of("alice") == 1
    assert await accounts.get_session("s2") is None
    assert await accounts.get_session("s3") is not None


@pytest.mark.asyncio
async def test_expired_sessions_are_purged(store: Store) -> None:
    accounts = _accounts(store)
    await accounts.add_session(_session("short", "alice", hours=1))
    await accounts.add_session(_session("long", "alice", hours=12))
    assert await accounts.delete_expired_sessions(T0 + timedelta(hours=2)) == 1
    assert await accounts.get_session("short") is None
    assert await accounts.get_session("long") is not None


@pytest.mark.asyncio
async def test_accounts_survive_a_reopen(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/fil.db"
    first = open_store(url)
    await first.open()
    await accounts_of(first).put_editor("alice", "h", "editor", now=T0)
    await accounts_of(first).add_session(_session("s1", "alice"))
    await first.close()

    second = open_store(url)
    await second.open()
    try:
        assert (await accounts_of(second).get_editor("alice")) is not None
        assert (await accounts_of(second).get_session("s1")) == _session("s1", "alice")
    finally:
        await second.close()


def test_a_store_without_accounts_is_named() -> None:
    with pytest.raises(TypeError, match="object keeps no editor accounts"):
        accounts_of(object())

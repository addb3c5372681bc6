"""The command line: serve (default), check, inspect, create-editor, create-token, export, import."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from curation.collectors.fetch import FEED_ACCEPT, Fetcher
from curation.config import Settings
from curation.errors import ConfigErrors, CurationError
from curation.store import Store
from curation.store.accounts import AccountStore, RoleName


def _settings() -> Settings:
    try:
        return Settings.from_env()
    except ValueError as e:
        print(f"fil: {e}", file=sys.stderr)
        raise SystemExit(2) from None


def cmd_serve(args: argparse.Namespace) -> int:
    from curation.server import serve
    from curation.sources import load_config

    settings = _settings()
    try:  # refuse to start on an invalid file, with the same messages as `check`
        load_config(settings.sources, min_interval=settings.min_poll_interval)
    except ConfigErrors as e:
        print(e, file=sys.stderr)
        return 2
    serve(settings)
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from curation.sources import load_config

    settings = _settings()
    path = args.path or settings.sources
    try:
        config = load_config(path, min_interval=settings.min_poll_interval)
    except ConfigErrors as e:
        print(e, file=sys.stderr)
        return 2
    print(f"{path}: ok, {len(config.events)} events, {len(config.sources)} sources", file=sys.stderr)
    return 0


async def _inspect_one(target: str, kind: str, fetcher: Fetcher) -> list[dict[str, object]]:
    from curation.codec import entry_to_json
    from curation.inspect import entries_of

    try:
        if target.startswith(("http://", "https://")):
            accept = "application/json" if kind in {"mastodon", "bluesky", "push"} else FEED_ACCEPT
            response = await fetcher.get(target, accept=accept)
            body, content_type, url = response.body, response.headers.get("content-type"), response.url
        else:
            body = await asyncio.to_thread(Path(target).read_bytes)
            content_type, url = None, Path(target).resolve().as_uri()
        entries = await asyncio.to_thread(entries_of, kind, body, content_type=content_type, url=url)
    except (CurationError, OSError, ValueError) as e:
        return [{"input": target, "error": str(e)}]
    if not entries:
        return [{"input": target, "items": 0}]
    return [{"input": target, **entry_to_json(entry)} for entry in entries]


async def _inspect(inputs: Sequence[str], kind: str, settings: Settings) -> None:
    async with Fetcher(
        allow_private=settings.allow_private_hosts, max_body=settings.max_body, total_timeout=settings.fetch_timeout
    ) as fetcher:
        for target in inputs:
            for line in await _inspect_one(target, kind, fetcher):
                print(json.dumps(line, ensure_ascii=False), flush=True)


def cmd_inspect(args: argparse.Namespace) -> int:
    try:
        asyncio.run(_inspect(args.inputs, args.kind, _settings()))
    except BrokenPipeError:  # `inspect ... | head` is fine
        sys.stderr.close()
    return 0


def _read_password() -> str:
    """The first line of standard input when it is not a terminal (scripts, CI), else asked twice."""
    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass("Password: ")
    if getpass.getpass("Password again: ") != first:
        raise ValueError("the two passwords differ")
    return first


async def _with_accounts(settings: Settings, job: Callable[[AccountStore], Awaitable[int]]) -> int:
    from curation.store import open_store
    from curation.store.accounts import accounts_of

    store = open_store(settings.store)
    await store.open()
    try:
        return await job(accounts_of(store))
    finally:
        await store.close()


def cmd_create_editor(args: argparse.Namespace) -> int:
    from curation.auth import check_editor_name, check_password, create_editor

    settings = _settings()
    role: RoleName = "admin" if args.admin else "editor"
    try:
        check_editor_name(args.name)
        password = _read_password()
        check_password(password)
    except ValueError as e:
        print(f"fil: {e}", file=sys.stderr)
        return 2

    async def job(accounts: AccountStore) -> int:
        if await create_editor(accounts, args.name, password, role):
            print(f"editor {args.name} created, role {role}", file=sys.stderr)
        else:
            print(
                f"editor {args.name} existed: password and role ({role}) updated, its sessions ended", file=sys.stderr
            )
        return 0

    return asyncio.run(_with_accounts(settings, job))


def cmd_create_token(args: argparse.Namespace) -> int:
    from curation.auth import create_token

    settings = _settings()

    async def job(accounts: AccountStore) -> int:
        editor = await accounts.get_editor(args.name)
        if editor is None or editor.disabled:
            print(f"fil: no such editor: {args.name} (create it with create-editor)", file=sys.stderr)
            return 2
        print(await create_token(accounts, args.name), flush=True)
        print(f"bearer token for {args.name} (role {editor.role}): shown once, store it now", file=sys.stderr)
        return 0

    return asyncio.run(_with_accounts(settings, job))


async def _with_store(settings: Settings, job: Callable[[Store], Awaitable[int]]) -> int:
    from curation.store import open_store

    try:
        store = open_store(settings.store, log_retention=settings.log_retention)
        await store.open()
    except (ValueError, CurationError) as e:
        print(f"fil: {e}", file=sys.stderr)
        return 2
    try:
        return await job(store)
    finally:
        await store.close()


def cmd_export(args: argparse.Namespace) -> int:
    from curation.models import rfc3339, utcnow

    settings = _settings()

    async def job(store: Store) -> int:
        dump = await store.dump_event(args.slug)
        if dump is None:
            print(f"fil: {settings.store}: nothing kept of event {args.slug!r}", file=sys.stderr)
            return 2
        text = json.dumps(dump.to_json(exported_at=rfc3339(utcnow()) or ""), ensure_ascii=False, indent=1)
        if args.output in (None, "-"):
            sys.stdout.write(text + "\n")
        else:
            Path(args.output).write_text(text + "\n", encoding="utf-8")
        print(f"event {args.slug}: {len(dump.items)} items, log at {dump.head}, exported", file=sys.stderr)
        return 0

    return asyncio.run(_with_store(settings, job))


def cmd_import(args: argparse.Namespace) -> int:
    from curation.transfer import TransferError, from_json

    settings = _settings()
    try:
        raw = sys.stdin.read() if args.file == "-" else Path(args.file).read_text(encoding="utf-8")
        dump = from_json(json.loads(raw), name=args.file)
    except (OSError, UnicodeDecodeError) as e:
        print(f"fil: {args.file}: {e}", file=sys.stderr)
        return 2
    except ValueError as e:  # JSON syntax
        print(f"fil: {args.file}: not JSON: {e}", file=sys.stderr)
        return 2
    except TransferError as e:
        print(f"fil: {e}", file=sys.stderr)
        return 2

    async def job(store: Store) -> int:
        try:
            count = await store.load_event(dump, replace=args.replace)
        except TransferError as e:
            print(f"fil: {settings.store}: {e}", file=sys.stderr)
            return 2
        print(
            f"event {dump.slug}: {count} items imported into {settings.store}, log at {dump.head}"
            " (restart running Fil processes to pick up its desk settings)",
            file=sys.stderr,
        )
        return 0

    return asyncio.run(_with_store(settings, job))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="app.py", description="Fil, the live news-and-social curation server.")
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("serve", help="serve (the default)").set_defaults(func=cmd_serve)
    check = commands.add_parser("check", help="validate sources.yaml; exit 2 when invalid")
    check.add_argument("path", nargs="?", help="the file (default: $CURATION_SOURCES or sources.yaml)")
    check.set_defaults(func=cmd_check)
    inspect = commands.add_parser("inspect", help="parse upstream documents as a collector would; JSON lines")
    inspect.add_argument("inputs", nargs="+", metavar="INPUT", help="files or http(s) URLs")
    inspect.add_argument("--kind", default="feed", choices=["feed", "mastodon", "bluesky", "jetstream", "push"])
    inspect.set_defaults(func=cmd_inspect)
    create_editor = commands.add_parser(
        "create-editor", help="create an editor, or set an existing one's password and role (password on stdin)"
    )
    create_editor.add_argument("name", metavar="NAME")
    create_editor.add_argument("--admin", action="store_true", help="the admin role (default: editor)")
    create_editor.set_defaults(func=cmd_create_editor)
    create_token = commands.add_parser("create-token", help="print a new bearer token for an existing editor")
    create_token.add_argument("name", metavar="NAME")
    create_token.set_defaults(func=cmd_create_token)
    export = commands.add_parser("export", help="one event (items, log position, audit, desk additions) as JSON")
    export.add_argument("slug", metavar="SLUG")
    export.add_argument("-o", "--output", help="the file to write (default: standard output)")
    export.set_defaults(func=cmd_export)
    import_ = commands.add_parser("import", help="an event exported by `export`, into $CURATION_STORE")
    import_.add_argument("file", metavar="FILE", help="the export file, or - for standard input")
    import_.add_argument("--replace", action="store_true", help="replace what the store has of that event")
    import_.set_defaults(func=cmd_import)
    args = parser.parse_args(argv)
    if args.command is None:
        return cmd_serve(args)
    return int(args.func(args))

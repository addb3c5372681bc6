"""sources.yaml loading: defaults, every class of error with its line and key path, the shipped file."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from curation.errors import ConfigErrors
from curation.models import Config, EventStatus, Moderation, Order, Role, SourceKind
from curation.sources import DEFAULT_APPVIEW, DEFAULT_JETSTREAM, load_config, parse_config

ROOT = Path(__file__).resolve().parent.parent


def parse(text: str, **kwargs: float) -> Config:
    return parse_config(textwrap.dedent(text), **kwargs)


def errors(text: str, **kwargs: float) -> list[str]:
    """Every message the validator reports for this text, in order."""
    with pytest.raises(ConfigErrors) as info:
        parse(text, **kwargs)
    return [str(e) for e in info.value.errors]


def one_event(sources: str) -> str:
    """A file with one event `e` whose sources list is `sources` (a YAML block starting at line 5)."""
    return "events:\n  - slug: e\n    title: E\n    sources:\n" + textwrap.indent(textwrap.dedent(sources), "      ")


# -- defaults ----------------------------------------------------------------------------------


def test_minimal_feed_source_and_event_take_the_documented_defaults() -> None:
    config = parse(
        """\
        events:
          - slug: stage-1
            title: Stage 1
            sources:
              - id: news
                kind: feed
                url: https://example.org/feed.xml
                role: editorial
        """
    )
    [event] = config.events
    assert (event.slug, event.title, event.line) == ("stage-1", "Stage 1", 2)
    assert (event.language, event.timezone, event.order, event.status) == ("en", "UTC", Order.NEWEST, EventStatus.LIVE)
    assert (event.keywords_block, event.keywords_allow, event.sources) == ((), (), ("news",))
    source = config.sources["news"]
    assert source.kind is SourceKind.FEED and source.role is Role.EDITORIAL
    assert source.url == "https://example.org/feed.xml"
    assert source.label == "news"
    assert source.moderation is Moderation.AUTO
    assert (source.enabled, source.interval, source.backfill) == (True, 60.0, 20)
    assert (source.include, source.exclude, dict(source.options), source.line) == ((), (), {}, 5)


def test_every_event_and_source_key_is_read() -> None:
    config = parse(
        """\
        events:
          - slug: tdf-2027-stage-1
            title: "Tour de France 2027, stage 1"
            language: fr
            timezone: Europe/Paris
            order: oldest
            status: closed
            keywords: {block: [casino], allow: [maillot jaune]}
            sources:
              - id: news
                kind: feed
                url: http://example.org/feed.xml
                role: team
                label: "L'Équipe"
                moderation: queue
                enabled: false
                include: [tour]
                exclude: [podcast, video]
                backfill: 0
                interval: 5m
        """
    )
    event = config.events[0]
    assert (event.language, event.timezone, event.order, event.status) == (
        "fr",
        "Europe/Paris",
        Order.OLDEST,
        EventStatus.CLOSED,
    )
    assert (event.keywords_block, event.keywords_allow) == (("casino",), ("maillot jaune",))
    source = config.sources["news"]
    assert (source.role, source.label, source.moderation, source.enabled) == (
        Role.TEAM,
        "L'Équipe",
        Moderation.QUEUE,
        False,
    )
    assert (source.include, source.exclude, source.backfill, source.interval) == (
        ("tour",),
        ("podcast", "video"),
        0,
        300.0,
    )


@pytest.mark.parametrize(("written", "seconds"), [("30s", 30.0), ("2m", 120.0), ("1h", 3600.0), ("90", 90.0)])
def test_interval_accepts_every_duration_form(written: str, seconds: float) -> None:
    config = parse(
        one_event(f"- {{id: a, kind: feed, url: 'https://a.example/f', role: official, interval: {written}}}")
    )
    assert config.sources["a"].interval == seconds


def test_a_higher_floor_also_lifts_the_default_interval() -> None:
    config = parse(one_event("- {id: a, kind: feed, url: 'https://a.example/f', role: editorial}"), min_interval=120)
    assert config.sources["a"].interval == 120.0


def test_mastodon_defaults_and_options() -> None:
    config = parse(
        one_event(
            """\
            - id: reporter
              kind: mastodon
              instance: https://mastodon.social/
              account: "@someone"
              role: journalist
              token_env: MASTODON_TOKEN
            """
        )
    )
    source = config.sources["reporter"]
    assert source.url is None
    assert source.moderation is Moderation.AUTO
    assert dict(source.options) == {
        "instance": "https://mastodon.social",
        "account": "someone",
        "token_env": "MASTODON_TOKEN",
        "replies": False,
        "boosts": True,
    }


def test_bluesky_defaults_and_options() -> None:
    config = parse(one_event("- {id: rider, kind: bluesky, actor: '@Rider.bsky.social', role: athlete}"))
    source = config.sources["rider"]
    assert source.moderation is Moderation.AUTO
    assert dict(source.options) == {
        "actor": "rider.bsky.social",
        "appview": DEFAULT_APPVIEW,
        "jetstream": DEFAULT_JETSTREAM,
    }
    did = parse(one_event("- {id: r, kind: bluesky, actor: 'did:plc:z72i7hdynmk6r22z27h6tvur', role: athlete}"))
    assert did.sources["r"].options["actor"] == "did:plc:z72i7hdynmk6r22z27h6tvur"


def test_push_source_keeps_its_secret_variable_name() -> None:
    config = parse(one_event("- {id: wire, kind: push, secret_env: WIRE_SECRET, role: editorial}"))
    assert dict(config.sources["wire"].options) == {"secret_env": "WIRE_SECRET"}


@pytest.mark.parametrize(
    "source",
    [
        "{id: s, kind: feed, url: 'https://a.example/f', role: other}",
        "{id: s, kind: mastodon, instance: 'https://m.example', hashtag: TDF2027, role: editorial}",
        "{id: s, kind: bluesky, hashtag: TDF2027, auth_env: BSKY_AUTH, role: official}",
    ],
)
def test_role_other_and_hashtag_sources_are_queued_by_default(source: str) -> None:
    assert parse(one_event(f"- {source}")).sources["s"].moderation is Moderation.QUEUE


def test_an_explicit_moderation_wins_over_the_hashtag_default() -> None:
    source = "{id: s, kind: mastodon, instance: 'https://m.example', hashtag: TDF, role: editorial, moderation: auto}"
    config = parse(one_event(f"- {source}"))
    assert config.sources["s"].moderation is Moderation.AUTO
    assert config.sources["s"].options["hashtag"] == "TDF"


def test_a_shared_source_used_by_two_events_appears_once() -> None:
    config = parse(
        """\
        sources:
          - id: wire
            kind: feed
            url: https://example.org/wire.xml
            role: editorial
        events:
          - slug: one
            title: One
            sources:
              - use: wire
              - {id: only-one, kind: feed, url: 'https://example.org/1.xml', role: team}
          - slug: two
            title: Two
            sources:
              - use: wire
        """
    )
    assert list(config.sources) == ["wire", "only-one"]
    assert config.sources["wire"].line == 2
    assert [e.sources for e in config.events] == [("wire", "only-one"), ("wire",)]
    assert [e.slug for e in config.events_of("wire")] == ["one", "two"]


def test_an_empty_event_list_is_valid() -> None:
    config = parse("events: []\n")
    assert config.events == () and dict(config.sources) == {}
    # a list whose entries are all commented out reads as null: still valid, still empty
    assert parse("sources:\nevents:\n").events == ()
    assert parse("events:\n  - slug: e\n    title: E\n    sources:\n").events[0].sources == ()


def test_yaml_merge_keys_are_honoured() -> None:
    config = parse(
        """\
        events:
          - slug: e
            title: E
            sources:
              - &base {id: a, kind: feed, url: 'https://a.example/f', role: athlete, interval: 2m}
              - <<: *base
                id: b
                url: https://b.example/f
        """
    )
    assert config.sources["b"].role is Role.ATHLETE and config.sources["b"].interval == 120.0
    assert config.sources["b"].url == "https://b.example/f"


# -- errors: one class at a time, each with its line and key path --------------------------------


def test_yaml_syntax_error_names_its_line() -> None:
    assert errors(
        """\
        events:
          - slug: e
            title: [unclosed
        """
    ) == [
        "sources.yaml:4: invalid YAML: while parsing a flow sequence (line 3), expected ',' or "
        "']', but got '<stream end>'"
    ]
    assert errors("events:\n\t- slug: e\n") == [
        "sources.yaml:2: invalid YAML: found character '\\t' that cannot start any token (indent with spaces, not tabs)"
    ]
    assert errors("events:\n  - slug: e\x00\n") == [
        "sources.yaml:2: invalid YAML: special characters are not allowed (#x0000)"
    ]
    assert errors("events: []\n---\nevents: []\n") == [
        "sources.yaml:2: invalid YAML: expected a single document in the stream (line 1), but found another document"
    ]


def test_empty_file_root_and_missing_events() -> None:
    assert errors("") == ["sources.yaml:1: the file is empty: it needs at least `events: []`"]
    assert errors("# only a comment\n") == ["sources.yaml:1: the file is empty: it needs at least `events: []`"]
    assert errors("- slug: e\n") == [
        "sources.yaml:1: expected a mapping with `events:` (and optionally `sources:`), got a list"
    ]
    assert errors("sources: []\n") == [
        "sources.yaml:1: events: missing: the file needs an `events:` list (`events: []` is valid)"
    ]


def test_unknown_keys_at_every_level() -> None:
    assert errors(
        """\
        event: []
        events:
          - slug: e
            title: E
            colour: red
            keywords: {block: [], deny: []}
            sources:
              - id: a
                kind: feed
                url: https://a.example/f
                role: editorial
                urll: https://a.example/g
              - id: b
                kind: push
                secret_env: B_SECRET
                role: editorial
                interval: 30s
              - id: c
                kind: mastodon
                instance: https://m.example
                account: c
                role: editorial
                actor: c.bsky.social
        """
    ) == [
        "sources.yaml:1: event: unknown key (did you mean 'events'?); expected one of: events, sources",
        "sources.yaml:5: events[0].colour: unknown key; expected one of: "
        "slug, title, language, timezone, order, status, keywords, sources",
        "sources.yaml:6: events[0].keywords.deny: unknown key; expected one of: block, allow",
        "sources.yaml:12: events[0].sources[0].urll: unknown key (did you mean 'url'?); a feed source takes: "
        "id, kind, role, label, moderation, enabled, include, exclude, backfill, interval, url",
        "sources.yaml:17: events[0].sources[1].interval: push sources are not polled: "
        "`interval` only applies to feed, mastodon, bluesky",
        "sources.yaml:23: events[0].sources[2].actor: unknown key for a mastodon source (`actor` belongs to bluesky)",
    ]


def test_wrong_types() -> None:
    assert errors(
        one_event(
            """\
            - id: a
              kind: feed
              url: https://a.example/f
              role: editorial
              label: 2027
              enabled: maybe
              include: tour
              exclude: [ok, [nested]]
              backfill: many
              interval: [1]
            """
        )
    ) == [
        "sources.yaml:9: events[0].sources[0].label: expected a string, got a number (2027): put it in quotes",
        "sources.yaml:10: events[0].sources[0].enabled: expected true or false, got a string ('maybe')",
        "sources.yaml:11: events[0].sources[0].include: expected a list of strings, got a string ('tour')",
        "sources.yaml:12: events[0].sources[0].exclude[1]: expected a string, got a list",
        "sources.yaml:13: events[0].sources[0].backfill: expected a whole number from 0 to 500, got a string ('many')",
        "sources.yaml:14: events[0].sources[0].interval: expected a duration (30s, 5m, 1h or seconds), got a list",
    ]
    assert errors("events:\n  - slug: e\n    title:\n    sources: {use: x}\n") == [
        "sources.yaml:3: events[0].title: expected a string, got nothing",
        "sources.yaml:4: events[0].sources: expected a list, got a mapping",
    ]
    assert errors("events: {slug: e}\n") == ["sources.yaml:1: events: expected a list, got a mapping"]


def test_missing_required_keys_point_at_their_mapping() -> None:
    assert errors(
        """\
        events:
          - title: no slug
          - slug: no-title
            sources:
              - kind: feed
                url: https://a.example/f
                role: editorial
              - id: b
                kind: feed
              - id: c
                role: official
              - {id: d, kind: mastodon, role: journalist}
              - {id: e, kind: push, role: official}
              - {id: f, kind: bluesky, role: athlete}
        """
    ) == [
        "sources.yaml:2: events[0].slug: missing (required)",
        "sources.yaml:3: events[1].title: missing (required)",
        "sources.yaml:5: events[1].sources[0].id: missing (required)",
        "sources.yaml:8: events[1].sources[1].role: missing (required)",
        "sources.yaml:8: events[1].sources[1].url: missing (required)",
        "sources.yaml:10: events[1].sources[2].kind: missing (required)",
        "sources.yaml:12: events[1].sources[3].instance: missing (required)",
        "sources.yaml:12: events[1].sources[3]: missing: a source of this kind needs `account:` or `hashtag:`",
        "sources.yaml:13: events[1].sources[4].secret_env: missing (required)",
        "sources.yaml:14: events[1].sources[5]: missing: a source of this kind needs `actor:` or `hashtag:`",
    ]


def test_duplicate_source_ids_across_shared_and_inline_sources() -> None:
    assert errors(
        """\
        sources:
          - {id: wire, kind: feed, url: 'https://a.example/f', role: editorial}
        events:
          - slug: one
            title: One
            sources:
              - {id: wire, kind: feed, url: 'https://b.example/f', role: editorial}
              - {id: mine, kind: feed, url: 'https://c.example/f', role: editorial}
          - slug: two
            title: Two
            sources:
              - {id: mine, kind: feed, url: 'https://d.example/f', role: editorial}
        """
    ) == [
        "sources.yaml:7: events[0].sources[0].id: duplicate source id 'wire': already declared at line 2 "
        "(to feed several events from one source, declare it under `sources:` and write `- use: wire`)",
        "sources.yaml:12: events[1].sources[0].id: duplicate source id 'mine': already declared at line 8 "
        "(to feed several events from one source, declare it under `sources:` and write `- use: mine`)",
    ]


def test_duplicate_and_malformed_slugs_and_ids() -> None:
    assert errors(
        """\
        events:
          - slug: stage-1
            title: A
          - slug: stage-1
            title: B
          - slug: Stage_2
            title: C
            sources:
              - {id: 'has space', kind: feed, url: 'https://a.example/f', role: editorial}
        """
    ) == [
        "sources.yaml:4: events[1].slug: duplicate slug 'stage-1': already used at line 2",
        "sources.yaml:6: events[2].slug: slug 'Stage_2' must match ^[a-z0-9-]+$ (lower-case letters, digits, -)",
        "sources.yaml:9: events[2].sources[0].id: source id 'has space' must be letters, digits, '.', '_' or '-' "
        "(it appears in URLs)",
    ]


def test_use_errors() -> None:
    assert errors(
        """\
        sources:
          - id: wire
            kind: feed
            url: https://a.example/f
            role: editorial
            use: other
        events:
          - slug: one
            title: One
            sources:
              - use: wir
              - use: wire
                role: team
              - use: inline
          - slug: two
            title: Two
            sources:
              - {id: inline, kind: feed, url: 'https://b.example/f', role: editorial}
              - use: wire
              - use: wire
        """
    ) == [
        "sources.yaml:6: sources[0].use: a shared source cannot `use:` another: declare it in full",
        "sources.yaml:11: events[0].sources[0].use: no shared source with id 'wir' (did you mean 'wire'?)",
        "sources.yaml:13: events[0].sources[1].role: a `use:` entry takes no other key (set it on the shared source)",
        "sources.yaml:14: events[0].sources[2].use: 'inline' is declared inside an event (line 18); "
        "only shared sources can be used: move it under the top-level `sources:`",
        "sources.yaml:20: events[1].sources[2]: source 'wire' is listed twice in this event",
    ]


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("url", "ftp://example.org/feed.xml", "not an http(s) URL"),
        ("url", "https://", "not an http(s) URL"),
        ("url", "example.org/feed.xml", "not an http(s) URL"),
        ("url", "https://exa mple.org/f", "not an http(s) URL"),
        ("url", "https://example.org:99999/f", "not an http(s) URL"),
        (
            "url",
            "https://user:hunter2@example.org/f",
            "the URL must not carry a user name or password: secrets never go in sources.yaml",
        ),
    ],
)
def test_bad_feed_urls(key: str, value: str, message: str) -> None:
    text = one_event(f"- id: a\n  kind: feed\n  role: editorial\n  {key}: '{value}'\n")
    assert errors(text) == [f"sources.yaml:8: events[0].sources[0].{key}: {message}"]


def test_bad_mastodon_and_bluesky_urls() -> None:
    assert errors(
        one_event(
            """\
            - id: m
              kind: mastodon
              instance: https://mastodon.social/@someone
              account: someone
              role: journalist
            - id: n
              kind: mastodon
              instance: mastodon.social
              account: someone
              role: journalist
            - id: b
              kind: bluesky
              actor: rider.bsky.social
              role: athlete
              appview: https://public.api.bsky.app/xrpc
              jetstream: https://jetstream2.us-east.bsky.network/subscribe
            """
        )
    ) == [
        "sources.yaml:7: events[0].sources[0].instance: not an http(s) base URL (e.g. "
        "https://mastodon.social, with no path)",
        "sources.yaml:12: events[0].sources[1].instance: not an http(s) base URL (e.g. "
        "https://mastodon.social, with no path)",
        "sources.yaml:19: events[0].sources[2].appview: not an http(s) base URL (e.g. "
        "https://mastodon.social, with no path)",
        "sources.yaml:20: events[0].sources[2].jetstream: not a ws(s) URL (e.g. "
        "wss://jetstream2.us-east.bsky.network/subscribe)",
    ]


def test_durations_and_the_interval_floor() -> None:
    text = one_event(
        """\
        - {id: a, kind: feed, url: 'https://a.example/f', role: editorial, interval: 10s}
        - {id: b, kind: feed, url: 'https://b.example/f', role: editorial, interval: 5 minutes}
        - {id: c, kind: feed, url: 'https://c.example/f', role: editorial, interval: 0.5}
        - {id: d, kind: feed, url: 'https://d.example/f', role: editorial, interval: 90s}
        """
    )
    assert errors(text) == [
        "sources.yaml:5: events[0].sources[0].interval: interval 10s is below the floor CURATION_MIN_POLL_INTERVAL=30s",
        "sources.yaml:6: events[0].sources[1].interval: not a duration: '5 minutes' (use 30s, 5m, "
        "1h or a number of seconds)",
        "sources.yaml:7: events[0].sources[2].interval: interval 0.5s is below the floor "
        "CURATION_MIN_POLL_INTERVAL=30s",
    ]
    assert errors(text, min_interval=120) == [
        "sources.yaml:5: events[0].sources[0].interval: interval 10s is below the floor "
        "CURATION_MIN_POLL_INTERVAL=120s",
        "sources.yaml:6: events[0].sources[1].interval: not a duration: '5 minutes' (use 30s, 5m, "
        "1h or a number of seconds)",
        "sources.yaml:7: events[0].sources[2].interval: interval 0.5s is below the floor "
        "CURATION_MIN_POLL_INTERVAL=120s",
        "sources.yaml:8: events[0].sources[3].interval: interval 90s is below the floor "
        "CURATION_MIN_POLL_INTERVAL=120s",
    ]
    # a lower floor (tests, intranet feeds) lets short intervals through
    assert parse(text.replace("5 minutes", "5m"), min_interval=0.1).sources["a"].interval == 10.0


def test_unknown_enum_values() -> None:
    assert errors(
        """\
        events:
          - slug: e
            title: E
            language: de
            timezone: Mars/Olympus
            order: random
            status: open
            sources:
              - {id: a, kind: rss, url: 'https://a.example/f', role: rider, moderation: later}
        """
    ) == [
        "sources.yaml:4: events[0].language: unknown language 'de' (expected one of: en, fr)",
        "sources.yaml:5: events[0].timezone: unknown time zone 'Mars/Olympus' (use an IANA name "
        "such as Europe/Paris or UTC)",
        "sources.yaml:6: events[0].order: unknown order 'random' (expected one of: newest, oldest)",
        "sources.yaml:7: events[0].status: unknown status 'open' (expected one of: live, draft, closed)",
        "sources.yaml:9: events[0].sources[0].kind: unknown kind 'rss' (expected one of: feed, "
        "mastodon, bluesky, push)",
        "sources.yaml:9: events[0].sources[0].role: unknown role 'rider' "
        "(expected one of: editorial, journalist, athlete, team, official, other)",
        "sources.yaml:9: events[0].sources[0].moderation: unknown moderation 'later' (expected one of: auto, queue)",
    ]


@pytest.mark.parametrize("zone", ["../../etc/passwd", "/etc/localtime", "Europe", "europe/paris", ""])
def test_timezone_must_be_a_zoneinfo_name(zone: str) -> None:
    messages = errors(f"events:\n  - slug: e\n    title: E\n    timezone: '{zone}'\n")
    assert len(messages) == 1 and messages[0].startswith("sources.yaml:4: events[0].timezone: ")


def test_keywords_shape() -> None:
    assert errors(
        """\
        events:
          - slug: a
            title: A
            keywords: [casino]
          - slug: b
            title: B
            keywords:
              block: casino
              allow: ['']
        """
    ) == [
        "sources.yaml:4: events[0].keywords: expected a mapping {block: [...], allow: [...]}, got a list",
        "sources.yaml:8: events[1].keywords.block: expected a list of strings, got a string ('casino')",
        "sources.yaml:9: events[1].keywords.allow[0]: must not be empty",
    ]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("-1", "backfill -1 is out of range: use 0 to 500"),
        ("501", "backfill 501 is out of range: use 0 to 500"),
        ("true", "expected a whole number from 0 to 500, got a boolean (true)"),
        ("2.5", "expected a whole number from 0 to 500, got a number (2.5)"),
    ],
)
def test_backfill_is_a_bounded_whole_number(value: str, message: str) -> None:
    text = one_event(f"- id: a\n  kind: feed\n  url: https://a.example/f\n  role: editorial\n  backfill: {value}\n")
    assert errors(text) == [f"sources.yaml:9: events[0].sources[0].backfill: {message}"]
    assert parse(text.replace(f"backfill: {value}", "backfill: 500")).sources["a"].backfill == 500


def test_secrets_written_inline_are_refused_without_echoing_them() -> None:
    messages = errors(
        """\
        password: s3cr3t-top
        events:
          - slug: e
            title: E
            sources:
              - id: m
                kind: mastodon
                instance: https://m.example
                account: someone
                role: journalist
                access_token: s3cr3t-mastodon
              - id: p
                kind: push
                role: editorial
                secret_env: s3cr3t-Push-Value
              - id: b
                kind: bluesky
                actor: b.bsky.social
                role: athlete
                app_password: s3cr3t-bsky
        """
    )
    assert messages == [
        "sources.yaml:1: password: secrets are never written in sources.yaml: "
        "put it in an environment variable and name it with a `*_env` key",
        "sources.yaml:11: events[0].sources[0].access_token: secrets are never written in sources.yaml: "
        "put it in an environment variable and name it with `token_env: VARIABLE`",
        "sources.yaml:15: events[0].sources[1].secret_env: must name an environment variable "
        "(A-Z, 0-9, _; e.g. MY_TOKEN): secrets never go in sources.yaml",
        "sources.yaml:20: events[0].sources[2].app_password: secrets are never written in sources.yaml: "
        "put it in an environment variable and name it with `auth_env: VARIABLE`",
    ]
    assert not any("s3cr3t" in m for m in messages)


def test_duplicate_yaml_keys_name_both_lines() -> None:
    assert errors(
        """\
        events:
          - slug: e
            title: E
            sources:
              - id: a
                kind: feed
                url: https://a.example/f
                role: editorial
                url: https://a.example/g
            title: F
        """
    ) == [
        "sources.yaml:9: events[0].sources[0].url: duplicate key (first at line 7; YAML keeps only one)",
        "sources.yaml:10: events[0].title: duplicate key (first at line 3; YAML keeps only one)",
    ]


def test_hashtag_and_account_rules() -> None:
    assert errors(
        one_event(
            """\
            - {id: a, kind: mastodon, instance: 'https://m.example', hashtag: '#TDF2027', role: other}
            - {id: b, kind: mastodon, instance: 'https://m.example', account: x, hashtag: y, role: other}
            - {id: c, kind: bluesky, hashtag: TDF2027, role: other}
            - {id: d, kind: mastodon, instance: 'https://m.example', account: 'not an account', role: team}
            - {id: e, kind: bluesky, actor: 'not a handle', role: athlete}
            - {id: f, kind: mastodon, instance: 'https://m.example', hashtag: 'tour de france', role: other}
            """
        )
    ) == [
        "sources.yaml:5: events[0].sources[0].hashtag: give the hashtag without '#': `hashtag: TDF2027`",
        "sources.yaml:6: events[0].sources[1].hashtag: give either `account:` or `hashtag:`, not both",
        "sources.yaml:7: events[0].sources[2].auth_env: a bluesky hashtag source needs `auth_env:` "
        "(search requires login)",
        "sources.yaml:8: events[0].sources[3].account: not a Mastodon account: 'not an account' "
        "(write `someone` or `someone@instance.example`)",
        "sources.yaml:9: events[0].sources[4].actor: not a Bluesky handle or DID: 'not a handle' "
        "(e.g. rider.bsky.social or did:plc:...)",
        "sources.yaml:10: events[0].sources[5].hashtag: not a hashtag: 'tour de france' (no spaces, '/', '?' or '&')",
    ]


def test_an_alias_cannot_declare_the_same_source_twice() -> None:
    assert errors(
        """\
        events:
          - slug: e
            title: E
            sources:
              - &a {id: a, kind: feed, url: 'https://a.example/f', role: editorial}
              - *a
        """
    ) == [
        "sources.yaml:5: events[0].sources[1]: repeats the entry at this line through a YAML "
        "alias: declare each entry once"
    ]


def test_unsupported_tags_are_refused_not_constructed() -> None:
    messages = errors(
        """\
        events:
          - slug: e
            title: !!python/object/apply:os.system ["echo owned"]
        """
    )
    assert messages == [
        "sources.yaml:3: events[0].title: expected a string, got a value tagged "
        "tag:yaml.org,2002:python/object/apply:os.system"
    ]


def test_every_error_is_reported_at_once_in_line_order() -> None:
    messages = errors(
        """\
        events:
          - slug: BAD
            title: A
            sources:
              - {id: a, kind: feed, url: 'nope', role: editorial}
        sources:
          - {id: s, kind: feed, url: 'https://a.example/f', role: boss}
        """
    )
    assert messages == [
        "sources.yaml:2: events[0].slug: slug 'BAD' must match ^[a-z0-9-]+$ (lower-case letters, digits, -)",
        "sources.yaml:5: events[0].sources[0].url: not an http(s) URL",
        "sources.yaml:7: sources[0].role: unknown role 'boss' (expected one of: editorial, journalist, athlete, "
        "team, official, other)",
    ]


def test_config_errors_message_joins_every_error() -> None:
    with pytest.raises(ConfigErrors) as info:
        parse_config("events:\n  - slug: a\n  - title: b\n", path="conf/live.yaml")
    assert str(info.value) == (
        "conf/live.yaml:2: events[0].title: missing (required)\nconf/live.yaml:3: events[1].slug: missing (required)"
    )
    assert [(e.path, e.line, e.key) for e in info.value.errors] == [
        ("conf/live.yaml", 2, "events[0].title"),
        ("conf/live.yaml", 3, "events[1].slug"),
    ]


# -- files ---------------------------------------------------------------------------------------


def test_load_config_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "live.yaml"
    path.write_text("events:\n  - slug: e\n    title: E\n    status: later\n", encoding="utf-8")
    with pytest.raises(ConfigErrors) as info:
        load_config(str(path))
    assert [str(e) for e in info.value.errors] == [
        f"{path}:4: events[0].status: unknown status 'later' (expected one of: live, draft, closed)"
    ]
    path.write_text("\ufeffevents: []\n", encoding="utf-8")
    assert load_config(str(path)).path == str(path)


def test_missing_and_unreadable_files(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigErrors) as info:
        load_config(str(missing))
    assert [str(e) for e in info.value.errors] == [f"{missing}: cannot read: No such file or directory"]
    latin1 = tmp_path / "latin1.yaml"
    latin1.write_bytes(b"events:\n  - slug: e\n    title: \xc9tape\n")
    with pytest.raises(ConfigErrors) as info:
        load_config(str(latin1))
    assert [str(e) for e in info.value.errors] == [f"{latin1}:3: not UTF-8 text (byte 0xc9)"]


def test_the_shipped_sources_yaml_is_valid() -> None:
    config = load_config(str(ROOT / "sources.yaml"))
    event = config.event("tdf-2027-stage-1")
    assert event is not None and event.status is EventStatus.DRAFT
    shared = [s for s in config.sources.values() if s.line is not None and s.line < (event.line or 0)]
    assert shared and shared[0].id in event.sources
    assert set(event.sources) == set(config.sources)
    social = [s for s in config.sources.values() if s.kind in (SourceKind.MASTODON, SourceKind.BLUESKY)]
    assert {s.kind for s in social} == {SourceKind.MASTODON, SourceKind.BLUESKY}
    assert not any(s.enabled for s in social)
    feeds = [s for s in config.sources.values() if s.kind is SourceKind.FEED]
    assert feeds and all(s.enabled and s.url and s.url.startswith("https://") for s in feeds)

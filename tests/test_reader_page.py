"""The reader page over real HTTP: pinned first, key moments, role filter in the URL, older pages, permalinks
to old items (published ones only), oldest-first French events, search-engine metadata, no inline script,
and the weight of a realistic page."""

from __future__ import annotations

import dataclasses
import gzip
import json
import random
import re
from collections.abc import AsyncIterator
from datetime import datetime
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from curation.models import Author, Card, Entry, Item, ItemKind, Media
from curation.timeline import item_id
from tests.conftest import RunningFil, make_entry, recent, start_fil, start_tags

SLUG = "stage-1"
QA = "qa"
SECRET = "reader-test-secret"
PUBLIC = "https://live.example/fil"
ROOT = Path(__file__).resolve().parent.parent
SOURCES = """\
events:
  - slug: stage-1
    title: "Stage 1 </script><!-- & co"
    timezone: Europe/Paris
    sources:
      - id: newsroom
        kind: push
        secret_env: READER_SECRET
        role: editorial
        label: The Daily
      - id: reporter
        kind: push
        secret_env: READER_SECRET
        role: journalist
        label: On the road
      - id: rider
        kind: push
        secret_env: READER_SECRET
        role: athlete
      - id: wire
        kind: push
        secret_env: READER_SECRET
        role: other
        moderation: queue
  - slug: qa
    title: Questions-réponses
    language: fr
    order: oldest
    sources:
      - id: qa-desk
        kind: push
        secret_env: READER_SECRET
        role: editorial
"""


async def start_reader(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **settings: object) -> RunningFil:
    monkeypatch.setenv("READER_SECRET", SECRET)
    (tmp_path / "sources.yaml").write_text(SOURCES)
    return await start_fil(tmp_path / "sources.yaml", tmp_path / "data", **settings)


@pytest.fixture
async def fil(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[RunningFil]:
    running = await start_reader(tmp_path, monkeypatch, public_url=PUBLIC)
    yield running
    await running.stop()


@pytest.fixture(params=["sqlite", "redis"])
async def any_store(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[RunningFil]:
    """Fil on each store: paging, filters and permalinks lean on the store's opaque cursors."""
    extra: dict[str, object] = {}
    if request.param == "redis":
        extra = {"store": request.getfixturevalue("redis_url"), "secret_key": "reader-test-key-" + "x" * 32}
    running = await start_reader(tmp_path, monkeypatch, public_url=PUBLIC, **extra)
    yield running
    await running.stop()


def entry(key: str, *, minutes_ago: float = 0, text: str = "", **fields: Any) -> Entry:
    """An entry of the test's feeds; a new `text` makes a new content hash (an edit)."""
    made = make_entry(key, text=text, url=f"https://news.example/{key}", published=recent(minutes_ago * 60))
    return dataclasses.replace(made, **fields) if fields else made


async def add(fil: RunningFil, source_id: str, *entries: Entry, slug: str = SLUG) -> list[Item]:
    """Entries through the store as a collector delivers them (moderation, change log, live readers)."""
    event = fil.fil.config.event(slug)
    assert event is not None
    changes = await fil.fil.store.ingest(event, fil.fil.config.sources[source_id], list(entries))
    items = [c.item for c in changes if c.item is not None]
    assert len(items) == len(entries)
    return items


def ident(source_id: str, key: str) -> str:
    return item_id(source_id, key)


async def act(fil: RunningFil, item: str, action: str, slug: str = SLUG, **extra: Any) -> None:
    await fil.fil.store.act(slug, item, action, editor="ops", **extra)


async def get(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, await response.text()


async def page_of(fil: RunningFil, query: str = "", slug: str = SLUG) -> str:
    status, body = await get(f"{fil.base}/events/{slug}{query}")
    assert status == 200, body
    return body


def article_ids(html: str) -> list[str]:
    return [attrs["data-id"] for tag, attrs in start_tags(html) if tag == "article"]


def attrs_of(html: str, tag: str, **match: str) -> list[dict[str, str]]:
    return [a for t, a in start_tags(html) if t == tag and all(a.get(k) == v for k, v in match.items())]


class _Scripts(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=False)
        self.scripts: list[tuple[dict[str, str], str]] = []
        self._open: dict[str, str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "script":
            self._open = {k: v or "" for k, v in attrs}
            self.scripts.append((self._open, ""))

    def handle_data(self, data: str) -> None:
        if self._open is not None:
            attrs, text = self.scripts[-1]
            self.scripts[-1] = (attrs, text + data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._open = None


def scripts(html: str) -> list[tuple[dict[str, str], str]]:
    parser = _Scripts()
    parser.feed(html)
    return parser.scripts


def links_by_text(html: str) -> dict[str, str]:
    return {
        re.sub(r"<[^>]+>", "", m.group(2)).strip(): m.group(1)
        for m in re.finditer(r'<a href="([^"]*)"[^>]*>(.*?)</a>', html, re.S)
    }


async def test_pinned_first_key_moments_and_what_search_engines_read(fil: RunningFil) -> None:
    first, second, third = await add(
        fil,
        "newsroom",
        entry("start", minutes_ago=30, title="The stage starts"),
        entry("attack", minutes_ago=20, title="Attack on the climb"),
        entry("latest", minutes_ago=1, title="Into the last kilometre </script> <b>"),
    )
    (rider,) = await add(fil, "rider", entry("selfie", minutes_ago=10, title="Feeling good"))
    (held,) = await add(fil, "wire", entry("wire-1", minutes_ago=2, title="Wire story held back"))
    await act(fil, first.id, "pin")
    await act(fil, second.id, "highlight", label="Attack")
    html = await page_of(fil)

    assert article_ids(html) == [first.id, third.id, rider.id, second.id]  # pinned first, then newest first
    assert "Wire story held back" not in html and held.id not in html
    moments = html[html.index('id="moments"') : html.index("</nav>", html.index('id="moments"'))]
    assert f'href="#item-{second.id}"' in moments and "Attack" in moments

    canonical = f"{PUBLIC}/events/{SLUG}"
    assert attrs_of(html, "link", rel="canonical")[0]["href"] == canonical
    assert attrs_of(html, "meta", property="og:url")[0]["content"] == canonical
    assert attrs_of(html, "meta", property="og:title")[0]["content"] == "Stage 1 </script><!-- & co"
    assert attrs_of(html, "meta", name="twitter:card")[0]["content"] == "summary"
    oembed = attrs_of(html, "link", type="application/json+oembed")[0]["href"]
    assert oembed.startswith(f"{PUBLIC}/oembed?url=") and "format=json" in oembed
    assert attrs_of(html, "link", type="application/atom+xml")[0]["href"] == f"{canonical}/feed.atom"
    assert attrs_of(html, "link", type="application/feed+json")[0]["href"] == f"{canonical}/feed.json"

    # scripts: files, or JSON data blocks that nothing in the data can close early
    found = scripts(html)
    assert found, "the page loads live.js"
    for attrs, text in found:
        if "src" in attrs:
            assert text.strip() == "", "a script with src carries no inline code"
        else:
            assert attrs.get("type") in ("application/json", "application/ld+json"), attrs
            assert "</" not in text and "<!--" not in text
    handlers = [(tag, name) for tag, attrs in start_tags(html) for name in attrs if name.startswith("on")]
    assert handlers == []
    (ld,) = [json.loads(text) for attrs, text in found if attrs.get("type") == "application/ld+json"]
    assert ld["@type"] == "LiveBlogPosting" and ld["@context"] == "https://schema.org"
    assert ld["headline"] == "Stage 1 </script><!-- & co" and ld["url"] == canonical
    start, end = (
        datetime.fromisoformat(ld[k].replace("Z", "+00:00")) for k in ("coverageStartTime", "coverageEndTime")
    )
    assert start <= end and abs((start - first.sort_at).total_seconds()) < 1
    updates = ld["liveBlogUpdate"]
    assert [u["url"] for u in updates[:2]] == [f"{canonical}#item-{third.id}", f"{canonical}#item-{rider.id}"]
    assert all(u["@type"] == "BlogPosting" and u["datePublished"] and u["headline"] for u in updates)
    assert updates[0]["headline"] == "Into the last kilometre </script> <b>"
    assert held.id not in json.dumps(ld)


async def test_role_chips_filter_the_server_rendered_page(any_store: RunningFil) -> None:
    fil = any_store
    news = await add(fil, "newsroom", *(entry(f"n{i}", minutes_ago=200 - i) for i in range(120)))
    (early,) = await add(fil, "reporter", entry("road-early", minutes_ago=199.5))
    (late,) = await add(fil, "reporter", entry("road-late", minutes_ago=1))
    (rider,) = await add(fil, "rider", entry("rider-1", minutes_ago=2))
    html = await page_of(fil)
    chips = html[html.index('class="chips"') : html.index("</nav>", html.index('class="chips"'))]
    labels = re.findall(r"<a [^>]*>([^<]+)</a>", chips)
    assert labels == ["All", "Newsroom", "Reporter", "Athlete", "Other"]
    assert 'href="/events/stage-1" data-role="" aria-current="true"' in chips
    assert 'href="/events/stage-1?roles=journalist"' in chips

    # a reporter filter reaches back through the newsroom's 120 items to the reporter's early post
    filtered = await page_of(fil, "?roles=journalist")
    assert article_ids(filtered) == [late.id, early.id]
    assert 'data-roles="journalist"' in filtered
    chips = filtered[filtered.index('class="chips"') :]
    assert re.search(r'href="/events/stage-1\?roles=journalist" data-role="journalist"', chips) is None
    assert 'href="/events/stage-1" data-role="journalist" aria-current="true"' in chips  # a second click clears it
    assert 'href="/events/stage-1?roles=editorial,journalist"' in chips
    both = await page_of(fil, "?roles=athlete,journalist")
    assert article_ids(both) == [late.id, rider.id, early.id]

    status, body = await get(f"{fil.base}/events/{SLUG}?roles=journalist,coach")
    assert status == 400 and "coach" in body
    assert news  # the newsroom's items are on the unfiltered page
    assert article_ids(html)[0] == late.id


async def test_older_pages_and_permalinks_to_old_items_published_only(any_store: RunningFil) -> None:
    fil = any_store
    items = await add(fil, "newsroom", *(entry(f"p{i}", minutes_ago=300 - i) for i in range(120)))
    newest_first = [i.id for i in reversed(items)]
    html = await page_of(fil)
    assert article_ids(html) == newest_first[:50]
    assert 'data-edge="1"' in html
    older = attrs_of(html, "a", id="older")[0]["href"]
    assert older.startswith("/events/stage-1?before=")
    second = await page_of(fil, older.removeprefix("/events/stage-1"))
    assert article_ids(second) == newest_first[50:100]
    assert 'data-edge="0"' in second and "Back to the latest posts" in second  # a page of older items
    third = await page_of(fil, attrs_of(second, "a", id="older")[0]["href"].removeprefix("/events/stage-1"))
    assert article_ids(third) == newest_first[100:] and 'id="older"' not in third
    status, body = await get(f"{fil.base}/events/{SLUG}?before=not-a-cursor")
    assert status == 400 and "before" in body

    # a permalink to an item far below the first page opens the page around it, a few newer items above
    old = items[10]
    around = await page_of(fil, f"?item={old.id}")
    ids = article_ids(around)
    assert ids.index(old.id) == 3 and ids[:4] == newest_first[106:110]
    assert "Back to the latest posts" in around
    # items near the top are simply on the first page
    assert article_ids(await page_of(fil, f"?item={items[-3].id}")) == newest_first[:50]

    # never a hidden or queued item, nor an unknown one
    await act(fil, items[5].id, "hide")
    (queued,) = await add(fil, "wire", entry("wire-old", minutes_ago=299, title="Queued wire copy"))
    for gone, title in ((items[5].id, "Title p5"), (queued.id, "Queued wire copy"), ("no-such-item", None)):
        status, body = await get(f"{fil.base}/events/{SLUG}?item={gone}")
        assert status == 404, gone
        assert "This post is not available." in body
        assert f'id="item-{gone}"' not in body
        if title:
            assert title not in body
    # with a role filter, the older link keeps it
    await add(fil, "reporter", *(entry(f"r{i}", minutes_ago=100 - i) for i in range(60)))
    filtered = await page_of(fil, "?roles=journalist")
    assert "roles=journalist" in attrs_of(filtered, "a", id="older")[0]["href"]


async def test_oldest_first_event_in_french(fil: RunningFil) -> None:
    items = await add(fil, "qa-desk", *(entry(f"q{i}", minutes_ago=90 - i) for i in range(55)), slug=QA)
    html = await page_of(fil, slug=QA)
    assert '<html lang="fr">' in html
    assert article_ids(html) == [i.id for i in items[:50]]  # oldest first
    assert 'data-order="oldest"' in html and 'data-edge="0"' in html  # newer items still to load
    assert "Messages suivants" in html and "Rédaction" in html and "Aller au fil" in html
    assert attrs_of(html, "meta", property="og:locale")[0]["content"] == "fr_FR"
    rest = await page_of(fil, attrs_of(html, "a", id="older")[0]["href"].removeprefix(f"/events/{QA}"), slug=QA)
    assert article_ids(rest) == [i.id for i in items[50:]] and 'data-edge="1"' in rest
    assert "chips" not in html  # one role only: nothing to filter


async def test_videos_are_posters_until_clicked(fil: RunningFil) -> None:
    pasted = Media(type="video", url="https://www.youtube-nocookie.com/embed/dQw4w9WgXcQ", alt="Finish line")
    clip = Media(type="video", url="https://media.example/clip.mp4", thumbnail="https://media.example/clip.jpg")
    card = Card(kind="link", url="https://youtu.be/aaaaaaaaaaa", title="Highlights", image="https://img.example/h.jpg")
    await add(
        fil,
        "rider",
        entry("yt", media=(pasted, clip), html=None, text="Watch"),
        entry("card", card=card, minutes_ago=1),
    )
    html = await page_of(fil)
    assert "<iframe" not in html and "<video" not in html
    yt = attrs_of(html, "a", **{"data-yt": "dQw4w9WgXcQ"})[0]
    assert yt["href"] == "https://www.youtube.com/watch?v=dQw4w9WgXcQ"  # without JavaScript: a plain link
    assert attrs_of(html, "a", **{"data-yt": "aaaaaaaaaaa"})[0]["href"] == "https://youtu.be/aaaaaaaaaaa"
    assert attrs_of(html, "a", **{"data-video": "https://media.example/clip.mp4"})
    assert "Play video" in html
    assert not [a for a in attrs_of(html, "img") if "youtube" in a.get("src", "")]


WORDS = (
    "breakaway riders gap peloton sprinters teams chasing crosswinds descent valley climb summit attack "
    "kilometre finish line jersey yellow green polka dot stage favourite crash puncture team car feed zone "
    "intermediate sprint points mountain classification minutes seconds rain heat crowd village bridge "
    "Pogačar Vingegaard Evenepoel Alaphilippe Tourmalet Hautacam Pyrenees Alps échappée maillot"
).split()


def realistic_entries(n: int) -> list[Entry]:
    """Posts as a busy live page has them: varied text, authors with avatars, HTML with links, images, cards."""
    made = []
    for i in range(n):
        rng = random.Random(i)
        text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(25, 55))).capitalize() + "."
        html = (
            f'<p>{text} <a href="https://news.example/live/{rng.getrandbits(40):x}">More</a> '
            f'<a href="https://tags.example/t/{rng.choice(WORDS)}">#{rng.choice(WORDS)}</a></p>'
        )
        media: tuple[Media, ...] = ()
        card = None
        if i % 3 == 0:
            media = (Media(type="image", url=f"https://media.example/{rng.getrandbits(64):x}.jpg", alt=text[:60]),)
        if i % 5 == 0:
            card = Card(
                kind="link",
                url=f"https://news.example/articles/{rng.getrandbits(48):x}",
                title=" ".join(rng.choice(WORDS) for _ in range(8)).capitalize(),
                description=" ".join(rng.choice(WORDS) for _ in range(20)).capitalize(),
                image=f"https://media.example/cards/{rng.getrandbits(64):x}.jpg",
            )
        who = rng.randrange(12)
        made.append(
            entry(
                f"busy-{i}",
                minutes_ago=200 - i,
                kind=ItemKind.POST,
                title=None if i % 2 else " ".join(rng.choice(WORDS) for _ in range(7)).capitalize(),
                text=text,
                html=html,
                author=Author(
                    name=f"Reporter {who}",
                    handle=f"@reporter{who}@mastodon.example",
                    url=f"https://mastodon.example/@reporter{who}",
                    avatar=f"https://mastodon.example/avatars/{rng.getrandbits(64):x}.png",
                ),
                media=media,
                card=card,
            )
        )
    return made


async def test_a_busy_page_weighs_under_50_kb_compressed(fil: RunningFil) -> None:
    await add(fil, "reporter", *realistic_entries(50))
    html = await page_of(fil)
    assert len(article_ids(html)) == 50
    sizes = {"html": len(gzip.compress(html.encode(), 9))}
    for name in ("fil.css", "live.js"):
        status, body = await get(f"{fil.base}/static/{name}")
        assert status == 200
        sizes[name] = len(gzip.compress(body.encode(), 9))
    total = sum(sizes.values())
    print(f"reader page, 50 items, gzip: {sizes} total {total} bytes")
    assert total <= 50 * 1024, sizes

"""The demo's recorded script and its release schedule: which posts exist, as they read, at any moment.

Pure apart from reading demo_data/script.json: curation/demo.py serves what Replay computes.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from curation.demo_formats import FORMATS, LinkPreview, Persona, Post, Site, Step, micros
from curation.errors import ConfigError
from curation.models import Role

SCRIPT_PATH = Path(__file__).parent / "demo_data" / "script.json"
#: the kinds of persona whose posts can be deleted (a feed item just leaves the document)
SOCIAL = ("mastodon", "bluesky")


@dataclass(frozen=True, slots=True)
class Script:
    """The recorded stage: who publishes, what, in which order, and the placeholder pictures."""

    personas: tuple[Persona, ...]
    steps: tuple[Step, ...]
    #: the first `initial` steps are released at once, dated `ago` minutes before the start
    initial: int
    #: image name -> (caption, hue)
    images: Mapping[str, tuple[str, int]]
    #: id of each new entry -> index of the step that publishes it
    index_of: Mapping[str, int]


def load_script(path: Path = SCRIPT_PATH) -> Script:
    """Read and check the recorded script.

    Raises:
        ConfigError: naming the file and the key that is wrong.
    """
    data = json.loads(path.read_text(encoding="utf-8"))
    personas = tuple(_persona(path, i, raw) for i, raw in enumerate(data["personas"]))
    images = {name: (str(raw["caption"]), int(raw["hue"])) for name, raw in data["images"].items()}
    formats = {p.key: p.format for p in personas}
    sources: dict[str, str] = {}
    index_of: dict[str, int] = {}
    deleted: set[str] = set()
    steps: list[Step] = []
    for index, raw in enumerate(data["steps"]):
        step = _step(path, index, raw, sources)
        _check_step(path, step, formats, images, steps, index_of, deleted)
        if step.is_new:
            sources[step.id] = step.source
            index_of[step.id] = index
        elif step.delete_of is not None:
            deleted.add(step.id)
        steps.append(step)
    initial = int(data["initial"])
    _check_first_batch(path, steps, initial, formats)
    return Script(personas=personas, steps=tuple(steps), initial=initial, images=images, index_of=index_of)


def _persona(path: Path, index: int, raw: Mapping[str, Any]) -> Persona:
    if raw["format"] not in FORMATS:
        raise ConfigError(f"unknown format {raw['format']!r}", path=str(path), key=f"personas[{index}].format")
    return Persona(
        key=str(raw["key"]),
        format=str(raw["format"]),
        role=Role(raw["role"]),
        label=str(raw["label"]),
        name=str(raw["name"]),
        bio=str(raw["bio"]),
        color=str(raw["color"]),
        handle=str(raw.get("handle", "")),
        path=str(raw.get("path", "")),
    )


def _step(path: Path, index: int, raw: Mapping[str, Any], sources: Mapping[str, str]) -> Step:
    action = "edit" if "edit" in raw else "delete" if "delete" in raw else None
    target = raw.get(action) if action is not None else None
    if action is not None and target not in sources:
        # an edit or delete must follow its entry, so the replay meets the entry first within each cycle
        raise ConfigError(f"{action} of unknown or later entry {target!r}", path=str(path), key=f"steps[{index}]")
    if action is None and raw["id"] in sources:
        raise ConfigError(f"duplicate entry id {raw['id']!r}", path=str(path), key=f"steps[{index}].id")
    ago = raw.get("ago")
    return Step(
        index=index,
        id=str(target if target is not None else raw["id"]),
        source=sources[target] if target is not None else str(raw["source"]),
        text=str(raw.get("text", "")),
        title=raw.get("title"),
        edit_of=target if action == "edit" else None,
        delete_of=target if action == "delete" else None,
        ago=float(ago) if ago is not None else None,
        image=raw.get("image"),
        alt=raw.get("alt"),
        category=raw.get("category"),
        creator=raw.get("creator"),
        tags=tuple(raw.get("tags", ())),
        link=raw.get("link"),
        cw=raw.get("cw"),
    )


def _check_step(
    path: Path,
    step: Step,
    formats: Mapping[str, str],
    images: Mapping[str, object],
    earlier: Sequence[Step],
    index_of: Mapping[str, int],
    deleted: set[str],
) -> None:
    def fail(message: str, key: str = "") -> None:
        raise ConfigError(message, path=str(path), key=f"steps[{step.index}]{key}")

    if step.source not in formats:
        fail(f"unknown source {step.source!r}", ".source")
    if step.image is not None and step.image not in images:
        fail(f"unknown image {step.image!r}", ".image")
    if not step.is_new and step.id in deleted:
        fail(f"{step.id!r} is already deleted")
    if step.edit_of is not None and formats[step.source] == "bluesky":
        fail(f"Bluesky posts cannot be edited: {step.id!r}", ".edit")
    if step.delete_of is not None and formats[step.source] not in SOCIAL:
        fail(f"only Mastodon statuses and Bluesky posts can be deleted, not {step.id!r}", ".delete")
    if step.link is not None and (not step.is_new or step.link not in index_of):
        fail(f"link to unknown or later entry {step.link!r} (only new entries link)", ".link")
    original = earlier[index_of[step.id]] if step.edit_of is not None else step
    links = original.link is not None and step.delete_of is None
    if step.text.count("{link}") != (1 if links else 0):
        fail("`{link}` must appear once in the text of an entry with `link`, and nowhere else", ".text")
    if step.image is not None and formats[step.source] == "bluesky" and original.link is not None:
        fail("a Bluesky post has one embed: an image or a link card, not both", ".image")


def _check_first_batch(path: Path, steps: Sequence[Step], initial: int, formats: Mapping[str, str]) -> None:
    last_ago = float("inf")
    for step in steps[:initial]:
        # strictly older first: ids, record keys and Jetstream times must grow with the step order
        if step.ago is None or not step.is_new or not 0 < step.ago < last_ago:
            raise ConfigError(
                "the first batch needs new entries with `ago`, oldest first", path=str(path), key=f"steps[{step.index}]"
            )
        last_ago = step.ago
    for step in steps[initial:]:
        if step.image is not None and formats[step.source] == "bluesky":
            # a live post reaches Fil through Jetstream, whose blobs only resolve on the real CDN
            raise ConfigError(
                "a Bluesky post with an image must be in the first batch", path=str(path), key=f"steps[{step.index}]"
            )


class Replay:
    """The release schedule, pure: which posts exist `elapsed` seconds after the start.

    Step `seq` of the endless replay (cycle = seq // len(steps)) is released at once for the first batch,
    then every `every` seconds; live posts are dated at their release, so the page looks live.
    """

    def __init__(self, script: Script, every: float, started: datetime, site: Site) -> None:
        self.script = script
        self.every = every
        self.started = started
        self.site = site
        # a run-unique prefix: a store kept across restarts meets new entries, not the old run's ids
        self.run = f"{int(started.timestamp()) % 100_000:05d}"
        self._personas = {p.key: p for p in script.personas}

    def released(self, elapsed: float) -> int:
        """How many steps of the endless replay are out."""
        return self.script.initial + int(max(elapsed, 0.0) // self.every)

    def release_offset(self, seq: int) -> float:
        """Seconds after the start when step `seq` is released."""
        return max(0, seq - self.script.initial + 1) * self.every

    def released_at(self, seq: int) -> datetime:
        return self.started + timedelta(seconds=self.release_offset(seq))

    def time_us(self, seq: int) -> int:
        """When step `seq` happened upstream, in microseconds (Jetstream's time_us); grows with `seq`."""
        step = self.script.steps[seq % len(self.script.steps)]
        if seq < self.script.initial and step.ago is not None:
            return micros(self.started - timedelta(minutes=step.ago))
        return micros(self.released_at(seq))

    def first_at(self, time_us: int, stop: int) -> int:
        """The first step in [0, stop) that happened at or after `time_us` (stop if none)."""
        low, high = 0, stop
        while low < high:
            middle = (low + high) // 2
            if self.time_us(middle) < time_us:
                low = middle + 1
            else:
                high = middle
        return low

    def posts(self, persona: str, elapsed: float, limit: int) -> list[Post]:
        """The newest `limit` posts of one persona, newest first, edits applied, deleted ones gone."""
        if not any(step.source == persona for step in self.script.steps):
            return []
        size = len(self.script.steps)
        edits: dict[tuple[int, str], int] = {}
        deleted: set[tuple[int, str]] = set()
        found: list[Post] = []
        seq = self.released(elapsed) - 1
        while seq >= 0 and len(found) < limit:
            cycle, step = seq // size, self.script.steps[seq % size]
            if step.edit_of is not None:
                edits.setdefault((cycle, step.id), seq)  # walking backwards: the first seen is the latest
            elif step.delete_of is not None:
                deleted.add((cycle, step.id))
            elif step.source == persona and (cycle, step.id) not in deleted:
                found.append(self._post(seq, step, edits.get((cycle, step.id))))
            seq -= 1
        return found

    def commits(self, start: int, stop: int) -> Iterator[tuple[int, str, Post]]:
        """The Bluesky repository commits of steps [start, stop): (seq, "create" or "delete", the post)."""
        size = len(self.script.steps)
        for seq in range(max(start, 0), stop):
            cycle, step = seq // size, self.script.steps[seq % size]
            if self._personas[step.source].format != "bluesky" or step.edit_of is not None:
                continue
            if step.delete_of is not None:
                original = self.script.index_of[step.id]
                yield seq, "delete", self._post(cycle * size + original, self.script.steps[original], None)
            else:
                yield seq, "create", self._post(seq, step, None)

    def _post(self, seq: int, step: Step, edit_seq: int | None) -> Post:
        size = len(self.script.steps)
        cycle = seq // size
        released = self.released_at(seq)
        historical = seq < self.script.initial and step.ago is not None
        published = self.started - timedelta(minutes=step.ago) if historical and step.ago is not None else released
        edit = self.script.steps[edit_seq % size] if edit_seq is not None else None
        preview = self._preview(cycle, step)
        text = edit.text if edit is not None else step.text
        return Post(
            step=step,
            seq=seq,
            cycle=cycle,
            number=f"{self.run}{seq:04d}",
            published=published,
            changed=self.released_at(edit_seq) if edit_seq is not None else released,
            title=edit.title if edit is not None and edit.title is not None else step.title,
            text=text.replace("{link}", preview.url) if preview is not None else text,
            edited=edit is not None,
            historical=historical,
            preview=preview,
        )

    def _preview(self, cycle: int, step: Step) -> LinkPreview | None:
        """The card of the entry `step` links to, in the same cycle (as it read when first published)."""
        if step.link is None:
            return None
        index = self.script.index_of[step.link]
        target = self.script.steps[index]
        post = self._post(cycle * len(self.script.steps) + index, target, None)
        persona = self._personas[target.source]
        summary = post.text.split("\n")[0]
        if len(summary) > 200:
            summary = summary[:199].rsplit(" ", 1)[0] + "…"
        return LinkPreview(
            url=FORMATS[persona.format].link(self.site, persona, post),
            title=post.title or f"{persona.label}: post",
            description=summary,
            image=target.image,
            provider=persona.label,
        )

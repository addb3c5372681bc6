"""An event's editable header block (key facts, standings, a short summary): its shape and its validation.

Pure: the store keeps it, the editor API validates with `parse_header`, pages and the live hub show `to_json`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from curation import posts
from curation.models import parse_rfc3339, rfc3339

MAX_SUMMARY = 2000
MAX_FACTS = 12
MAX_STANDINGS = 20
MAX_LABEL = 60
MAX_VALUE = 200
MAX_RANK = 10
MAX_NAME = 120


class HeaderError(ValueError):
    """A header field is wrong; the message starts with the field's path (`facts[2].label: ...`)."""


@dataclass(frozen=True, slots=True)
class Fact:
    label: str
    value: str


@dataclass(frozen=True, slots=True)
class Standing:
    name: str
    detail: str = ""
    rank: str | None = None


@dataclass(frozen=True, slots=True)
class Header:
    """What an editor wrote; `summary_html` is `summary` through posts.render (sanitized)."""

    summary: str = ""
    facts: tuple[Fact, ...] = ()
    standings: tuple[Standing, ...] = ()
    updated_at: datetime | None = None
    updated_by: str = ""
    version: int = 0

    @property
    def summary_html(self) -> str:
        return posts.render(self.summary) if self.summary.strip() else ""

    @property
    def empty(self) -> bool:
        return not (self.summary.strip() or self.facts or self.standings)

    def to_json(self) -> dict[str, Any]:
        return {
            "summary": self.summary,
            "summary_html": self.summary_html,
            "facts": [{"label": f.label, "value": f.value} for f in self.facts],
            "standings": [{"rank": s.rank, "name": s.name, "detail": s.detail} for s in self.standings],
            "updated_at": rfc3339(self.updated_at) if self.updated_at else None,
            "updated_by": self.updated_by,
            "version": self.version,
        }


def _text(value: object, path: str, limit: int, *, required: bool = False, numbers: bool = True) -> str:
    if value is None:
        value = ""
    if numbers and isinstance(value, int | float) and not isinstance(value, bool):
        value = str(value)  # a rank or a time gap typed as a number is still what the editor meant
    if not isinstance(value, str):
        raise HeaderError(f"{path}: expected a string")
    text = " ".join(value.split()) if limit <= MAX_VALUE else value.strip()
    if required and not text:
        raise HeaderError(f"{path}: empty")
    if len(text) > limit:
        raise HeaderError(f"{path}: longer than {limit} characters")
    return text


def _list(body: dict[str, Any], key: str, limit: int) -> list[dict[str, Any]]:
    value = body.get(key) or []
    if not isinstance(value, list):
        raise HeaderError(f"{key}: expected a list")
    if len(value) > limit:
        raise HeaderError(f"{key}: at most {limit} entries")
    for i, row in enumerate(value):
        if not isinstance(row, dict):
            raise HeaderError(f"{key}[{i}]: expected an object")
    return value


def parse_header(body: object) -> tuple[Header, int | None]:
    """The header an editor sent (JSON object) and the version they saw; HeaderError names the first bad field."""
    if not isinstance(body, dict):
        raise HeaderError("body: expected a JSON object")
    version = body.get("version")
    if version is not None and (not isinstance(version, int) or isinstance(version, bool)):
        raise HeaderError("version: expected a number")
    summary = _text(body.get("summary"), "summary", MAX_SUMMARY, numbers=False)
    facts = tuple(
        Fact(
            label=_text(row.get("label"), f"facts[{i}].label", MAX_LABEL, required=True),
            value=_text(row.get("value"), f"facts[{i}].value", MAX_VALUE, required=True),
        )
        for i, row in enumerate(_list(body, "facts", MAX_FACTS))
    )
    standings = tuple(
        Standing(
            rank=_text(row.get("rank"), f"standings[{i}].rank", MAX_RANK) or None,
            name=_text(row.get("name"), f"standings[{i}].name", MAX_NAME, required=True),
            detail=_text(row.get("detail"), f"standings[{i}].detail", MAX_VALUE),
        )
        for i, row in enumerate(_list(body, "standings", MAX_STANDINGS))
    )
    return Header(summary=summary, facts=facts, standings=standings), version


def header_to_record(header: Header) -> dict[str, Any]:
    record = header.to_json()
    del record["summary_html"]  # rendered on the way out, so a renderer fix reaches stored headers
    return record


def header_from_record(record: dict[str, Any]) -> Header:
    return Header(
        summary=record.get("summary", ""),
        facts=tuple(Fact(label=f["label"], value=f["value"]) for f in record.get("facts", [])),
        standings=tuple(
            Standing(rank=s.get("rank"), name=s["name"], detail=s.get("detail", ""))
            for s in record.get("standings", [])
        ),
        updated_at=parse_rfc3339(record["updated_at"]) if record.get("updated_at") else None,
        updated_by=record.get("updated_by", ""),
        version=int(record.get("version", 0)),
    )

"""The README keeps up with the code: every setting is documented, and the two set-up commands are there."""

from __future__ import annotations

from pathlib import Path

from curation.config import SETTINGS

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def test_every_setting_is_in_the_readme() -> None:
    missing = [s.name for s in SETTINGS if f"`{s.name}`" not in README]
    assert missing == []


def test_readme_shows_the_two_setup_commands_and_ci_calls_make_test() -> None:
    assert "make run" in README and "make test" in README
    assert "make test" in (ROOT / ".ci" / "run").read_text()

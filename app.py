"""Fil's entry point: `python app.py [serve|check|inspect]`; `app` is the ASGI application for other servers."""

from __future__ import annotations

import sys

from curation.cli import main


def __getattr__(name: str) -> object:
    # built on first use so that `python app.py check` never opens the store or reads settings twice
    if name == "app":
        from curation.web import create_app

        return create_app()
    raise AttributeError(name)


if __name__ == "__main__":
    sys.exit(main())

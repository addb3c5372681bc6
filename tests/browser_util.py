"""Helpers for the browser tests: waiting on a page condition under Fil's Content-Security-Policy.

Playwright's `wait_for_function` polls with eval inside the page, which a CSP without 'unsafe-eval' (every
Fil page) refuses; `evaluate` runs through the DevTools protocol, which no CSP governs, so the polling
is done from here instead.
"""

from __future__ import annotations

import asyncio

from playwright.async_api import Error, Frame, Page

#: seconds a condition may take (generous: the machine may be busy)
WAIT = 20.0
POLL = 0.05


async def until_true(target: Page | Frame, expression: str, timeout: float = WAIT) -> None:
    """Waits until `expression` (a JavaScript expression) is truthy in the page or frame.

    An expression that throws (an element not there yet, a navigation under way) counts as false.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last_error: Error | None = None
    while True:
        try:
            if await target.evaluate(expression):
                return
        except Error as e:
            last_error = e
        if loop.time() >= deadline:
            raise AssertionError(f"never true within {timeout:g}s: {expression} (last error: {last_error})")
        await asyncio.sleep(POLL)

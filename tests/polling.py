"""Waiting in tests: call a predicate until it holds, checking meanwhile that what should answer still runs."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def poll_until(
    predicate: Callable[[], Any],
    timeout: float,
    timed_out: Callable[[], str],
    *,
    interval: float = 0.1,
    alive: Callable[[], None] | None = None,
) -> Any:
    """The predicate's first truthy value. ``alive`` raises when the process waited on has died;
    ``timed_out`` gives the message of the AssertionError raised after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if alive is not None:
            alive()
        time.sleep(interval)
    raise AssertionError(timed_out())

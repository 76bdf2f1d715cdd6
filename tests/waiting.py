"""Poll until a condition holds, instead of a hand-written ``while time.monotonic() < deadline``.

A check is either a predicate (a truthy result means done, a falsy one "not yet") or an
assertion (it raises ``AssertionError`` until it holds; its result, even ``None``, means done).
On timeout ``AssertionError`` says what the last attempt saw, so a failing test shows the state
it was waiting on rather than just "timed out".
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar, cast, overload

T = TypeVar("T")

_PENDING = object()  # "not yet" from a predicate, told apart from an assertion's None


def _attempt(result: object, error: AssertionError | None) -> tuple[object, str]:
    """The value when the attempt passed (else _PENDING), and how to describe it if it did not."""
    if error is not None:
        return _PENDING, f"last failure: {error}"
    if result is None or result:  # None: an assertion-style check that did not raise
        return result, ""
    return _PENDING, f"last value: {result!r}"


def _timed_out(what: str, timeout: float, last: str) -> AssertionError:
    return AssertionError(f"{what or 'condition'} not met within {timeout} s; {last}")


def eventually(
    check: Callable[[], T], *, timeout: float, interval: float = 0.1, what: str = ""
) -> T:
    """Call ``check`` every ``interval`` s until it passes; its passing result is returned."""
    deadline = time.monotonic() + timeout
    while True:
        error: AssertionError | None = None
        result: object = None
        try:
            result = check()
        except AssertionError as exc:
            error = exc
        value, last = _attempt(result, error)
        if value is not _PENDING:
            return cast(T, value)
        if time.monotonic() >= deadline:
            raise _timed_out(what, timeout, last) from error
        time.sleep(interval)


@overload
async def eventually_async(
    check: Callable[[], Awaitable[T]], *, timeout: float, interval: float = ..., what: str = ...
) -> T: ...


@overload
async def eventually_async(
    check: Callable[[], T], *, timeout: float, interval: float = ..., what: str = ...
) -> T: ...


async def eventually_async(
    check: Callable[[], object],
    *,
    timeout: float,
    interval: float = 0.1,
    what: str = "",
) -> object:
    """``eventually`` for the event loop: sleeps without blocking it; ``check`` may be async."""
    deadline = time.monotonic() + timeout
    while True:
        error: AssertionError | None = None
        result: object = None
        try:
            result = check()
            if inspect.isawaitable(result):
                result = await result
        except AssertionError as exc:
            error = exc
        value, last = _attempt(result, error)
        if value is not _PENDING:
            return value
        if time.monotonic() >= deadline:
            raise _timed_out(what, timeout, last) from error
        await asyncio.sleep(interval)


def settle(check: Callable[[], T], *, timeout: float, interval: float = 0.1) -> T:
    """Poll ``check`` until its result is empty and return the last result, empty or not.

    For callers that report what is left (a reliability row, ``assert left == []`` with its own
    message) rather than fail here.
    """
    last: list[T] = []

    def empty() -> bool:
        last[:] = [check()]
        return not last[0]

    with contextlib.suppress(AssertionError):
        eventually(empty, timeout=timeout, interval=interval)
    return last[0]

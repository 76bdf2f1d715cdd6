"""tests/waiting.py: what passes, what is "not yet", and what a timeout says."""

from __future__ import annotations

import pytest

from tests.waiting import eventually, eventually_async, settle


def test_predicate_result_is_returned_once_truthy() -> None:
    calls = iter([0, [], "ready"])
    assert eventually(lambda: next(calls), timeout=5, interval=0) == "ready"


def test_assertion_style_check_passes_with_none() -> None:
    left = [2]

    def drained() -> None:
        left[0] -= 1
        assert left[0] <= 0, left

    assert eventually(drained, timeout=5, interval=0) is None
    assert left == [0]


def test_timeout_names_the_last_value_and_the_last_failure() -> None:
    with pytest.raises(AssertionError, match=r"queue empty not met within 0 s; last value: 0"):
        eventually(lambda: [3][:0] or 0, timeout=0, what="queue empty")
    with pytest.raises(AssertionError, match="last value: \\[\\]"):
        eventually(lambda: [], timeout=0.05, interval=0.01)

    def never() -> None:
        raise AssertionError("status is deferred")

    with pytest.raises(AssertionError, match="last failure: status is deferred"):
        eventually(never, timeout=0.05, interval=0.01)


def test_other_errors_are_not_retried() -> None:
    calls = []

    def broken() -> bool:
        calls.append(1)
        raise RuntimeError("bug")

    with pytest.raises(RuntimeError):
        eventually(broken, timeout=5, interval=0)
    assert calls == [1]


async def test_async_variant_awaits_async_checks() -> None:
    calls = iter([False, False, True])

    async def check() -> bool:
        return next(calls)

    assert await eventually_async(check, timeout=5, interval=0) is True
    assert await eventually_async(lambda: 7, timeout=5) == 7
    with pytest.raises(AssertionError, match="last value: False"):
        await eventually_async(lambda: False, timeout=0.05, interval=0.01)


def test_settle_returns_what_is_left() -> None:
    values = iter([[1, 2], [1], []])
    assert settle(lambda: next(values), timeout=5, interval=0) == []
    assert settle(lambda: {9}, timeout=0.05, interval=0.01) == {9}

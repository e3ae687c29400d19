"""The deadline poll every test waits with."""

from __future__ import annotations

import time

import pytest

from tests.support.waiting import eventually, until, until_sync


class Countdown:
    """A condition that holds from its `n`-th check on, counting the checks."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.checks = 0

    def __call__(self) -> bool:
        self.checks += 1
        return self.checks >= self.n

    async def check(self) -> bool:
        return self()


async def test_until_returns_at_once_when_the_condition_holds() -> None:
    holds = Countdown(1)
    started = time.monotonic()
    await until(holds, timeout=5, every=1)
    assert holds.checks == 1
    assert time.monotonic() - started < 0.5  # no wait of `every` before the first check


async def test_until_polls_a_predicate_or_a_coroutine_function() -> None:
    plain, awaited = Countdown(3), Countdown(4)
    await until(plain, every=0.001)
    await until(awaited.check, every=0.001)
    assert (plain.checks, awaited.checks) == (3, 4)


async def test_until_fails_at_the_deadline_naming_what_it_waited_for() -> None:
    never = Countdown(10**9)
    started = time.monotonic()
    with pytest.raises(AssertionError, match=r"the lease not reached in 0\.05s"):
        await until(never, timeout=0.05, every=0.01, what="the lease")
    assert 0.05 <= time.monotonic() - started < 1.0
    assert never.checks >= 2


def test_until_sync_polls_then_fails_at_the_deadline() -> None:
    soon = Countdown(3)
    until_sync(soon, every=0.001)
    assert soon.checks == 3
    with pytest.raises(AssertionError, match=r"condition not reached in 0\.02s"):
        until_sync(Countdown(10**9), timeout=0.02, every=0.005)


async def test_eventually_returns_the_accepted_value_and_ignores_listed_errors() -> None:
    answers = iter([ConnectionError("not yet"), {"phase": "Pending"}, {"phase": "Ready"}])

    def fetch() -> dict[str, str]:
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    ready = await eventually(
        fetch, lambda d: d["phase"] == "Ready", every=0.001, ignore=(ConnectionError,)
    )
    assert ready == {"phase": "Ready"}


async def test_eventually_fails_with_the_last_value_and_the_explanation() -> None:
    with pytest.raises(AssertionError) as failed:
        await eventually(
            lambda: {"phase": "Pending"},
            lambda d: d["phase"] == "Ready",
            timeout=0.02,
            what="db Ready",
            explain=lambda: "--- daemon.log\nlast line",
        )
    assert str(failed.value) == (
        "db Ready not reached in 0.02s (last: {'phase': 'Pending'})\n--- daemon.log\nlast line"
    )


async def test_eventually_lets_other_errors_through() -> None:
    def broken() -> bool:
        raise KeyError("status")

    with pytest.raises(KeyError):
        await eventually(broken, ignore=(ConnectionError,))

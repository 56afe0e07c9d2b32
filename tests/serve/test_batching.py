"""Requests of one event-loop turn share an engine call; each gets its own answer, in order, and a
request that breaks the batch fails alone."""

from __future__ import annotations

import asyncio

import pytest

from collabkit.serve.batching import Batcher


class Recorder:
    """An engine stand-in: answers each place with its user id, records the batches it was given."""

    def __init__(self, bad: str | None = None) -> None:
        self.batches: list[list[str]] = []
        self.bad = bad

    def answer(self, places: list[tuple]) -> list[str]:
        self.batches.append([p[0] for p in places])
        if any(p[0] == self.bad for p in places):
            raise ValueError(f"cannot answer {self.bad}")
        return [f"list of {p[0]}" for p in places]


def place(user: str) -> tuple:
    return (user, -1, None, None, 10)


def test_the_requests_of_one_turn_are_answered_in_one_call_in_order():
    engine = Recorder()

    async def main() -> list[str]:
        return await asyncio.gather(*(batcher.answer(engine, place(f"u{k}")) for k in range(5)))

    batcher = Batcher()
    assert asyncio.run(main()) == [f"list of u{k}" for k in range(5)]
    assert engine.batches == [[f"u{k}" for k in range(5)]]


def test_a_later_turn_is_a_new_batch_and_each_engine_gets_its_own_requests():
    live, canary = Recorder(), Recorder()

    async def main() -> tuple:
        first = await asyncio.gather(batcher.answer(live, place("a")), batcher.answer(canary, place("b")), batcher.answer(live, place("c")))
        second = await batcher.answer(live, place("d"))
        return first, second

    batcher = Batcher()
    first, second = asyncio.run(main())
    assert list(first) == ["list of a", "list of b", "list of c"] and second == "list of d"
    assert live.batches == [["a", "c"], ["d"]] and canary.batches == [["b"]]


def test_a_request_that_breaks_its_batch_fails_alone():
    engine = Recorder(bad="u2")

    async def main() -> list:
        return await asyncio.gather(*(batcher.answer(engine, place(f"u{k}")) for k in range(4)), return_exceptions=True)

    batcher = Batcher()
    got = asyncio.run(main())
    assert got[:2] == ["list of u0", "list of u1"] and got[3] == "list of u3"
    assert isinstance(got[2], ValueError) and "u2" in str(got[2])
    assert engine.batches[0] == ["u0", "u1", "u2", "u3"]  # tried together first, then one by one


def test_a_request_whose_client_went_away_does_not_stop_the_others():
    engine = Recorder()

    async def main() -> str:
        gone = asyncio.ensure_future(batcher.answer(engine, place("gone")))
        stays = asyncio.ensure_future(batcher.answer(engine, place("stays")))
        await asyncio.sleep(0)  # both are waiting for the batch
        gone.cancel()
        with pytest.raises(asyncio.CancelledError):
            await gone
        return await stays

    batcher = Batcher()
    assert asyncio.run(main()) == "list of stays"

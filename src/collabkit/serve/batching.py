"""Requests that arrive together are answered together: one engine call per turn of the event loop.

A recommendation request places its user (``Engine.place``: the user's stored ratings, read by
the request itself) and waits here. The first request of a turn schedules the batch to run after
every request already started in that turn; the batch then answers all of them in one
``Engine.answer`` per engine (a canary arm is its own engine): the users to fold in are folded
in together and every list is scored in one ``top_n``, so under load a request's share of the
work shrinks, and requests are answered in the order they arrived. Alone, a request is a batch of
one, one turn later. If a batch fails, each request is answered on its own, so one bad request
fails only itself.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the engine imports torch: the app loads it with the first model, not here
    from collabkit.serve.engine import Answer, Place

log = logging.getLogger("collabkit.serve")


class Batcher:
    """The requests waiting for this turn's batch (one per worker, on its event loop)."""

    def __init__(self) -> None:
        self.waiting: list[tuple[Any, Place, asyncio.Future[Answer]]] = []

    async def answer(self, engine: Any, place: Place) -> Answer:
        """``engine.answer([place])[0]``, computed with the other requests of this turn."""
        loop = asyncio.get_running_loop()
        if not self.waiting:
            loop.call_soon(self._run)
        done: asyncio.Future[Answer] = loop.create_future()
        self.waiting.append((engine, place, done))
        return await done

    def _run(self) -> None:
        batch, self.waiting = self.waiting, []
        for engine in {id(e): e for e, _, _ in batch}.values():
            mine = [(place, done) for e, place, done in batch if e is engine]
            try:
                answers = engine.answer([place for place, _ in mine])
            except Exception:
                log.exception("a batch of %d requests failed: answering each alone", len(mine))
                answers = None  # answered one by one below: only the bad request fails
            for k, (place, done) in enumerate(mine):
                if done.done():  # the client went away
                    continue
                try:
                    done.set_result(answers[k] if answers is not None else engine.answer([place])[0])
                except Exception as e:  # noqa: BLE001 -- raised in that request's handler
                    done.set_exception(e)

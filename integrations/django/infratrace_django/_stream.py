"""Streamed response bodies: the ``http:`` span ends when the body is consumed or the
response is closed, not when the view returns."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Iterator
from typing import Any

from infratrace.instrumentation import AnySpan, attach, detach

__all__ = ["AsyncTracedStream", "TracedStream"]

# Called once with (exception or None, whether the body was read to its end).
Finish = Callable[[BaseException | None, bool], None]


class _Stream:
    """What both wrappers share: the span to make current, and ``finish`` called once."""

    __slots__ = ("_finish", "_span")

    def __init__(self, span: AnySpan, finish: Finish) -> None:
        self._span = span
        self._finish: Finish | None = finish

    def close(self) -> None:
        self._end(None, False)

    def _end(self, exc: BaseException | None, complete: bool) -> None:
        finish, self._finish = self._finish, None
        if finish is not None:
            finish(exc, complete)


class TracedStream(_Stream):
    """Wraps a sync body iterator. Django registers our ``close`` with the response
    (``_set_streaming_content`` keeps any ``close`` of the new content), and every
    server closes the response, so the span also ends when the client goes away
    before the body was read — even if iteration never started."""

    __slots__ = ("_iterator",)

    def __init__(self, content: Iterable[Any], span: AnySpan, finish: Finish) -> None:
        super().__init__(span, finish)
        self._iterator = iter(content)

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        # The request's span is current while the body is produced, so spans begun by
        # a generator view's body are its children (the server iterates after the
        # middleware has returned). Attached for this chunk only: the server's own
        # context (shared by its next requests under WSGI) is left as it was.
        token = attach(self._span)
        try:
            return next(self._iterator)
        except StopIteration:
            self._end(None, True)
            raise
        except BaseException as exc:
            self._end(exc, False)
            raise
        finally:
            detach(token)


class AsyncTracedStream(_Stream):
    """Wraps an async body iterator (Django ≥ 4.2 streams those under ASGI). Has no
    ``__iter__``, so Django keeps treating the content as async."""

    __slots__ = ("_iterator",)

    def __init__(self, content: AsyncIterable[Any], span: AnySpan, finish: Finish) -> None:
        super().__init__(span, finish)
        self._iterator = aiter(content)

    def __aiter__(self) -> AsyncIterator[Any]:
        return self

    async def __anext__(self) -> Any:
        token = attach(self._span)
        try:
            return await self._iterator.__anext__()
        except StopAsyncIteration:
            self._end(None, True)
            raise
        except BaseException as exc:
            self._end(exc, False)
            raise
        finally:
            detach(token)

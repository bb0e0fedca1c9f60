"""Group commit: one fsync makes every answer written before it durable.

An answer is sent only once the log lines it wrote are on disk. Fsyncing each answer's
lines in turn, on the thread that scores, makes every payment wait for its own fsync and
the next payment wait behind it. Here the scoring thread only writes and flushes (the lines
are then in the kernel, which a killed process does not lose) and takes a ticket; one
thread fsyncs the log files in a loop, each fsync covering every ticket taken before it
began, and wakes the answers it covers. Under load one fsync serves a batch of answers;
alone, an answer waits for one fsync, as before. This is the group commit of databases
(PostgreSQL's ``commit_delay``, the binlog group commit of MySQL).
"""

from __future__ import annotations

import asyncio
import os
import threading


class GroupCommit:
    """Tickets for written lines, made durable by a background fsync thread.

    Files are registered by name with :meth:`track` (the thread fsyncs its own duplicate of
    each descriptor, so a file closed by its writer, such as the previous day's decision
    log, is still synced once more before its duplicate is closed).
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._files: dict[str, int] = {}
        self._retired: list[int] = []
        self._written = 0
        self._synced = 0
        self._error: BaseException | None = None
        self._waiters: list[tuple[int, asyncio.AbstractEventLoop, asyncio.Future]] = []
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="fraudlab-group-commit",
                                        daemon=True)
        self._thread.start()

    def track(self, name: str, fileobj) -> None:
        """Sync ``fileobj`` (its current descriptor) from now on, in place of the file
        registered under ``name`` before."""
        fd = os.dup(fileobj.fileno())
        with self._cond:
            old = self._files.get(name)
            if old is not None:
                self._retired.append(old)
            self._files[name] = fd

    def wrote(self) -> int:
        """A ticket for the lines written and flushed so far (call after the flush)."""
        with self._cond:
            if self._error is not None:
                raise _failed(self._error)
            self._written += 1
            self._cond.notify_all()
            return self._written

    def wait(self, ticket: int) -> None:
        """Block until ``ticket``'s lines are on disk."""
        with self._cond:
            while self._synced < ticket and self._error is None:
                self._cond.wait()
            self._raise(ticket)

    async def wait_async(self, ticket: int) -> None:
        """:meth:`wait` for a coroutine: the event loop keeps serving meanwhile."""
        loop = asyncio.get_running_loop()
        with self._cond:
            if self._synced >= ticket or self._error is not None:
                self._raise(ticket)
                return
            future = loop.create_future()
            self._waiters.append((ticket, loop, future))
        await future

    def _raise(self, ticket: int) -> None:
        if self._synced < ticket and self._error is not None:
            raise _failed(self._error)

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._written == self._synced and not self._closed:
                    self._cond.wait()
                if self._written == self._synced and self._closed:
                    break
                target = self._written
                fds, retired = list(self._files.values()), self._retired
                self._retired = []
            try:
                for fd in (*fds, *retired):
                    os.fsync(fd)
            except OSError as exc:
                error = exc
            else:
                error = None
            for fd in retired:
                os.close(fd)
            with self._cond:
                if error is not None:
                    self._error = error
                else:
                    self._synced = target
                self._cond.notify_all()
                done = [w for w in self._waiters if w[0] <= self._synced or error is not None]
                self._waiters = [w for w in self._waiters if w not in done]
            for _, loop, future in done:
                loop.call_soon_threadsafe(_settle, future, error)
            if error is not None:
                break
        for fd in self._files.values():
            os.close(fd)
        self._files = {}

    def close(self) -> None:
        """Sync what was written, then stop the thread."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join()


def _settle(future: asyncio.Future, error: BaseException | None) -> None:
    if future.done():  # the request was cancelled (its client went away)
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(_failed(error))


def _failed(error: BaseException) -> OSError:
    return OSError(f"the logs could not be synced: {error}")

"""LogStream: one job's output lines in a Redis Stream, written by the job, followed by a client."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

from redis import Redis
from redis.exceptions import RedisError

from paas.errors import JobError

KEY_PREFIX = "paas:log:"
FINISHED_TTL_S = 24 * 3600
# Bounds a stream whose job died without finishing it: longer than any deploy may run.
UNFINISHED_TTL_S = 2 * 3600
MAX_ENTRIES = 100_000
BLOCK_MS = 1000
READ_COUNT = 500

Entry = tuple[bytes, dict[bytes, bytes]]


class LogStream:
    """Lines of one job, then one final (ok, message) entry."""

    def __init__(self, redis: Redis, stream_id: str) -> None:
        self.redis = redis
        self.stream_id = stream_id
        self.key = KEY_PREFIX + stream_id
        self._result: tuple[bool, str] | None = None

    def write(self, line: str) -> None:
        self._add({"line": line.rstrip("\n")}, UNFINISHED_TTL_S)

    def finish(self, ok: bool, message: str) -> None:
        self._add({"done": "1" if ok else "0", "message": message}, FINISHED_TTL_S)

    @property
    def result(self) -> tuple[bool, str]:
        """(ok, message) of the finished job; only known once follow() has ended."""
        if self._result is None:
            raise JobError(f"job {self.stream_id} has not finished")
        return self._result

    def follow(
        self, timeout: float | None = None, alive: Callable[[], bool] | None = None
    ) -> Iterator[str]:
        """Yield lines as they arrive, from the start, until the job finishes.

        `alive` is asked while the stream is quiet; once it says False and no final entry
        follows, the job is taken as lost. `timeout` bounds the whole wait (JobError).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        last = b"0-0"
        while self._result is None:
            entries = self._read(last, _block_ms(deadline))
            for entry_id, fields in entries:
                last = entry_id
                if self._take(fields):
                    return
                yield fields.get(b"line", b"").decode(errors="replace")
            if entries:
                continue
            if deadline is not None and time.monotonic() >= deadline:
                raise JobError(f"timed out waiting for job {self.stream_id}")
            if alive is not None and not alive():
                yield from self._drain(last)
                return

    def _drain(self, last: bytes) -> Iterator[str]:
        # The job may have finished between the last read and the liveness check.
        for _, fields in self._read(last, None):
            if self._take(fields):
                return
            yield fields.get(b"line", b"").decode(errors="replace")
        self._result = (False, "the job stopped without reporting a result")

    def _take(self, fields: dict[bytes, bytes]) -> bool:
        if b"done" not in fields:
            return False
        message = fields.get(b"message", b"").decode(errors="replace")
        self._result = (fields[b"done"] == b"1", message)
        return True

    def _read(self, last: bytes, block_ms: int | None) -> list[Entry]:
        try:
            reply = self.redis.xread({self.key: last}, count=READ_COUNT, block=block_ms)
        except RedisError as exc:
            raise JobError(f"cannot read the log of job {self.stream_id}: {exc}") from None
        return list(reply[0][1]) if reply else []  # type: ignore[index, arg-type]

    def _add(self, fields: dict[str, str], ttl_s: int) -> None:
        try:
            pipe = self.redis.pipeline()
            pipe.xadd(self.key, fields, maxlen=MAX_ENTRIES, approximate=True)  # type: ignore[arg-type]
            pipe.expire(self.key, ttl_s)
            pipe.execute()
        except RedisError as exc:
            raise JobError(f"cannot write the log of job {self.stream_id}: {exc}") from None


def _block_ms(deadline: float | None) -> int:
    if deadline is None:
        return BLOCK_MS
    remaining = int((deadline - time.monotonic()) * 1000)
    return max(1, min(BLOCK_MS, remaining))

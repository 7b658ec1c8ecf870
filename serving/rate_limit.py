"""Per-caller rate limits: a token bucket per caller, in the embedded server and the gateway.

A caller is who the request log names (`core.Call.identity`): the token's name when the server
takes tokens (serving/access.py), else the client's address. Each caller's bucket holds up to
`burst` requests and refills at `per_second`; a request takes one, whatever its size (rows per
request are bounded by serving/limits.py). A request finding the bucket empty is refused before
anything else is done with it: REST 429 with `Retry-After`, gRPC RESOURCE_EXHAUSTED with
`retry-after` in the trailing metadata, both in whole seconds.

Where a limit comes from: the token's own (`"rate_limit"` in the tokens file), else the server's
(`serve --rate-limit`, `--rate-burst`); none, no limit. Model status and metrics are never
limited (the kubelet's probes and Prometheus's scrape must get through).

Memory: a bucket left alone for `burst / per_second` seconds is full again, exactly as a new
one would be, so it is dropped without changing any answer; past `max_buckets` callers at once
the least recently seen is dropped even if not full (it is forgiven what it owed): memory is
bounded however many addresses a client connects from. Every operation is O(1) (amortised) under
one lock.

The limit is per process: gateway workers (serving/workers.py) and replicas each count on their
own, so a caller's ceiling over a deployment is the limit times the processes its connections
reach.
"""

from __future__ import annotations

import collections
import dataclasses
import math
import threading
import time
from typing import Callable, Optional, Tuple


@dataclasses.dataclass(frozen=True)
class RateLimit:
    """`per_second` requests sustained, up to `burst` at once."""

    per_second: float
    burst: float

    def __post_init__(self):
        if not (isinstance(self.per_second, (int, float)) and math.isfinite(self.per_second) and self.per_second > 0):
            raise ValueError(f'a rate limit needs a positive number of requests per second, not {self.per_second!r}')
        if not (isinstance(self.burst, (int, float)) and math.isfinite(self.burst) and self.burst >= 1):
            raise ValueError(f'a rate limit needs a burst of at least 1 request, not {self.burst!r}')

    @classmethod
    def of(cls, per_second: float, burst: Optional[float] = None) -> 'RateLimit':
        """A limit whose burst defaults to one second's worth (at least one request)."""
        return cls(per_second, max(1.0, per_second) if burst is None else burst)

    def describe(self) -> str:
        return f'{self.per_second:g}/s, burst {self.burst:g}'


class TokenBucket:
    """Not thread-safe on its own: `RateLimiter` holds the lock."""

    __slots__ = ('limit', 'tokens', 'stamp')

    def __init__(self, limit: RateLimit, now: float):
        self.limit, self.tokens, self.stamp = limit, float(limit.burst), now

    def _refill(self, now: float) -> None:
        if now > self.stamp:
            self.tokens = min(self.limit.burst, self.tokens + (now - self.stamp) * self.limit.per_second)
            self.stamp = now

    def take(self, now: float, cost: float = 1.0) -> float:
        """0 if `cost` was taken; else the seconds until it could be (nothing is taken)."""
        self._refill(now)
        if self.tokens >= cost:
            self.tokens -= cost
            return 0.0
        return (cost - self.tokens) / self.limit.per_second

    def full_at(self) -> float:
        """When the bucket is full again if nothing is taken meanwhile."""
        return self.stamp + (self.limit.burst - self.tokens) / self.limit.per_second


class RateLimiter:
    """Buckets by caller key; `admit(key, limit)` is the whole interface."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, max_buckets: int = 100_000):
        self._clock = clock
        self._max_buckets = max_buckets
        # Least recently seen first: expiry looks at the front only.
        self._buckets: 'collections.OrderedDict[Tuple[str, str], TokenBucket]' = collections.OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._buckets)

    def admit(self, key: Tuple[str, str], limit: Optional[RateLimit]) -> float:
        """0 if the caller `key` may make a request now (and it is counted); else the seconds to wait."""
        if limit is None:
            return 0.0
        with self._lock:
            now = self._clock()
            bucket = self._buckets.get(key)
            if bucket is None:
                bucket = self._buckets[key] = TokenBucket(limit, now)
            else:
                self._buckets.move_to_end(key)
                if bucket.limit != limit:  # the tokens file changed: the new limit from now, never more than its burst
                    bucket._refill(now)
                    bucket.limit, bucket.tokens = limit, min(bucket.tokens, limit.burst)
            wait = bucket.take(now)
            self._expire(now)
            return wait

    def _expire(self, now: float) -> None:
        # Each bucket is dropped at most once per insertion: amortised O(1). A front bucket not yet
        # full keeps later full ones a while longer; the cap bounds them regardless.
        while self._buckets:
            key, oldest = next(iter(self._buckets.items()))
            if oldest.full_at() <= now or len(self._buckets) > self._max_buckets:
                del self._buckets[key]
            else:
                break


def retry_after_seconds(wait: float) -> int:
    """Retry-After is whole seconds (RFC 9110, 10.2.3): rounded up, so a client that waits that long gets in."""
    return max(1, math.ceil(wait))


def parse_limit(text: str, burst: Optional[float] = None, flag: str = '--rate-limit') -> RateLimit:
    """`--rate-limit 5` (per second) [+ `--rate-burst 10`] as a RateLimit; ValueError naming the flag."""
    try:
        per_second = float(text)
    except (TypeError, ValueError):
        raise ValueError(f'{flag} {text!r}: give the requests per second each caller may make, e.g. 5 or 0.5') \
            from None
    try:
        return RateLimit.of(per_second, burst)
    except ValueError as e:
        raise ValueError(f'{flag} {text}' + (f' --rate-burst {burst:g}' if burst is not None else '') + f': {e}') \
            from None

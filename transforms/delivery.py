"""Delivery to Amplitude: the DoFn that POSTs each batch of events.

:class:`PostToAmplitudeFn` takes the ``(shard_key, events)`` batches of
GroupIntoBatches and POSTs them to Amplitude's HTTP V2 or Batch API. What happens after
each answer is the response policy of :func:`transforms.amplitude.decide`: every event
is either accepted by Amplitude or leaves on the ``dead_letter`` output with its reason.
Retries resend the same events, whose deterministic ``insert_id`` lets Amplitude drop
repeats, within a time budget per batch (``--max_retry_secs``).

Nothing here raises on a delivery failure, because a streaming step that raises is
retried forever. The API key never appears in logs, dead-letter reasons or metrics.
"""

from __future__ import annotations

import dataclasses
import heapq
import itertools
import json
import logging
import random
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, ClassVar, Literal

import apache_beam as beam
import requests
from apache_beam.metrics import Metrics
from apache_beam.utils.secret import GcpSecret
from requests.adapters import HTTPAdapter

from transforms import METRICS_NAMESPACE, amplitude
from transforms.amplitude import Decision, DeliverySettings
from transforms.dead_letter import (
    DEAD_LETTER_TAG,
    MASK,
    DeadLetter,
    clean_reason,
    make_dead_letter,
)
from transforms.events import OutboundEvent

_LOGGER = logging.getLogger(__name__)

__all__ = [
    "DEAD_LETTER_TAG",
    "METRICS_NAMESPACE",
    "THROTTLING_COUNTER",
    "EmptyApiKeySecret",
    "PostToAmplitudeFn",
]

# Dataflow's autoscaler reads a counter of this exact name as a sign of backpressure.
THROTTLING_COUNTER = "cumulativeThrottlingSeconds"
_STAGE = "deliver"
# The dead-letter output as process() declares it (the main output is an int).
_DeadLetterOutput = beam.pvalue.TaggedOutput[Literal["dead_letter"], DeadLetter]
# Connections per DoFn instance: one host, and one request in flight at a time.
_POOL_CONNECTIONS = 1
_POOL_MAXSIZE = 1
_HEADERS = {"Content-Type": "application/json", "Accept": "application/json"}


class EmptyApiKeySecret(ValueError):
    """The Secret Manager version holds nothing but white space."""


class _DeliveryMetrics:
    """The delivery step's counters and distributions, in one namespace."""

    def __init__(self) -> None:
        def counter(name: str) -> Any:
            return Metrics.counter(METRICS_NAMESPACE, name)

        self.requests = counter("requests")
        self.events_delivered = counter("events_delivered")
        self.retries = counter("retries")
        self.events_throttled = counter("events_throttled")
        self.events_dead_lettered = counter("events_dead_lettered")
        self.dead_lettered = {
            kind: counter(f"dead_lettered_{kind}")
            for kind in amplitude.DEAD_LETTER_KINDS
        }
        self.throttling_seconds = counter(THROTTLING_COUNTER)
        self.batch_size = Metrics.distribution(METRICS_NAMESPACE, "batch_size")
        self.request_latency_ms = Metrics.distribution(
            METRICS_NAMESPACE, "request_latency_ms"
        )


class _TokenBucket:
    """A rate cap of ``rate`` tokens per second with bursts of one second's worth.

    A caller reserves tokens and then waits the time returned. A reservation larger
    than the tokens left runs the bucket into debt that later callers wait off, so
    the average rate holds whatever the sizes of the reservations.
    """

    def __init__(self, rate: float, clock: Callable[[], float]) -> None:
        self._rate = rate
        self._tokens = rate
        self._clock = clock
        self._last = clock()
        self._lock = threading.Lock()

    def reserve(self, amount: float) -> float:
        """Takes ``amount`` tokens; returns the seconds to wait before using them."""
        with self._lock:
            now = self._clock()
            elapsed = max(0.0, now - self._last)
            self._last = max(now, self._last)
            self._tokens = min(self._rate, self._tokens + elapsed * self._rate)
            self._tokens -= amount
            return 0.0 if self._tokens >= 0 else -self._tokens / self._rate


@dataclasses.dataclass
class _Chunk:
    """Events of a batch that travel in one request.

    Attributes:
      positions: indexes of the events in the input batch.
      attempts: requests already made with these events.
      backoffs: backoff waits so far (the exponent of the next one).
      paused: waiting out a 429 pause (counted as throttling time).
      last_status, last_summary: the last answer, for a retries-exhausted reason.
    """

    positions: list[int]
    attempts: int = 0
    backoffs: int = 0
    paused: bool = False
    last_status: int | None = None
    last_summary: str = ""


@dataclasses.dataclass
class _Failure:
    positions: list[int]
    kind: str
    reason: str
    status: int | None


class _BatchState:
    """One input batch on its way: its events, the budget and what became of each."""

    def __init__(
        self, shard_key: object, events: list[OutboundEvent], deadline: float
    ) -> None:
        self.shard_key = shard_key
        self.events = events
        self.deadline = deadline
        # Each event's JSON, encoded once by the plan and reused by every request.
        self.encoded: list[bytes] = [b""] * len(events)
        self.delivered = 0
        self.failures: list[_Failure] = []
        self._resolved = [False] * len(events)

    def deliver(self, positions: Sequence[int]) -> None:
        for position in positions:
            self._resolved[position] = True
        self.delivered += len(positions)

    def fail(
        self, positions: Sequence[int], kind: str, reason: str, status: int | None
    ) -> None:
        if not positions:
            return
        for position in positions:
            self._resolved[position] = True
        self.failures.append(_Failure(list(positions), kind, reason, status))

    def unresolved(self) -> list[int]:
        return [i for i, done in enumerate(self._resolved) if not done]


class PostToAmplitudeFn(beam.DoFn):
    """POSTs batches of Amplitude events; failed events leave as dead letters.

    Input: ``(shard_key, events)`` from GroupIntoBatches, ``events`` an iterable of
    :class:`~transforms.events.OutboundEvent`. Main output: for each input batch of
    which at least one event was delivered, the number of events Amplitude accepted
    (an ``int``). Output ``dead_letter`` (:data:`DEAD_LETTER_TAG`): one
    :class:`~transforms.dead_letter.DeadLetter` (stage ``deliver``) per failed event.

    A batch is first cut into requests of at most ``settings.batch_size`` events and
    ``settings.max_body_bytes`` bytes; an event too large on its own is dead-lettered
    without being sent. Answers are handled by :func:`transforms.amplitude.decide`;
    every wait for a retry counts against ``settings.max_retry_secs``, and when the
    rest of that budget cannot cover the next wait the events are dead-lettered at once
    with the last status and reason.

    HTTP: one ``requests.Session`` per instance, made in ``setup()`` with a pool of
    kept-alive connections and closed in ``teardown()``; HTTPS certificates are
    verified (requests' default), timeouts are ``(connect, read)`` from the settings,
    redirects are not followed, and the standard proxy environment variables
    (``HTTPS_PROXY``, ``NO_PROXY``, ...) are honoured, as requests does by default.

    Rate caps: ``settings.max_requests_per_sec`` and ``max_events_per_sec`` (0 = none)
    are the caps of one worker process. Its token buckets are shared by every
    instance and thread of the process, whatever shard key a batch has, so a process
    stays within the caps; a job of N worker processes within N times them. Waits on
    the caps and on 429 pauses are counted, in whole seconds, by the
    ``cumulativeThrottlingSeconds`` counter that Dataflow's autoscaler reads.

    Args:
      settings: where and how to deliver.
      api_key: the key itself (local runs); exactly one of the two key arguments.
      api_key_secret: a Secret Manager version, ``projects/P/secrets/S/versions/V``,
        read in ``setup()``. When it cannot be read, each batch retries reading it
        within its retry budget and is then dead-lettered (reason kind
        ``key_unavailable``); the step keeps running.
      clock: seconds of a monotonic clock (default ``time.monotonic``).
      sleep: waits that many seconds (default ``time.sleep``); tests pass fakes.
    """

    _metrics: ClassVar[_DeliveryMetrics] = _DeliveryMetrics()
    # Token buckets shared by the instances of one process, by (cap, rate, clock): a
    # test's fake clock gets buckets of its own.
    _buckets: ClassVar[dict[tuple, _TokenBucket]] = {}
    _buckets_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(
        self,
        settings: DeliverySettings,
        api_key: str | None = None,
        api_key_secret: str | None = None,
        clock: Callable[[], float] | None = None,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        super().__init__()
        if (api_key is None) == (api_key_secret is None):
            raise ValueError("give exactly one of api_key and api_key_secret")
        if api_key is not None and not api_key:
            raise ValueError("api_key is empty")
        self._settings = settings
        self._api_key = api_key
        self._api_key_secret = api_key_secret
        self._clock = clock or time.monotonic
        self._sleep = sleep or time.sleep
        self._session: requests.Session | None = None
        self._key: str | None = None
        self._random = random.Random()
        self._throttling_carry = 0.0

    # Lifecycle

    def setup(self) -> None:
        session = requests.Session()
        adapter = HTTPAdapter(
            pool_connections=_POOL_CONNECTIONS,
            pool_maxsize=_POOL_MAXSIZE,
            max_retries=0,
        )
        session.mount("https://", adapter)
        session.mount("http://", adapter)
        self._session = session
        self._random = random.Random()
        self._key = self._api_key
        if self._key is None:
            try:
                self._key = self._read_secret()
            except Exception as error:  # read again by each batch in process()
                _LOGGER.error(
                    "Could not read the Amplitude API key from Secret Manager (%s); "
                    "each batch will retry reading it within its retry budget",
                    type(error).__name__,
                )
        _LOGGER.debug(
            "Delivering to %s (%s API): batches of up to %d events, retries within "
            "%g s, caps %g requests/s and %g events/s per process (0 = none)",
            self._settings.url,
            self._settings.api,
            self._settings.batch_size,
            self._settings.max_retry_secs,
            self._settings.max_requests_per_sec,
            self._settings.max_events_per_sec,
        )

    def teardown(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None

    def process(
        self, element: tuple[Any, Iterable[OutboundEvent]]
    ) -> Iterator[int | _DeadLetterOutput]:
        shard_key, batch = element
        events = list(batch)
        if not events:
            return
        deadline = self._clock() + self._settings.max_retry_secs
        state = _BatchState(shard_key, events, deadline)
        try:
            key = self._key_within_budget(state)
            if key is not None:
                self._deliver(state, key)
        except Exception as error:  # a step that raises is retried forever
            self._fail_unexpected(state, error)
        yield from self._outputs(state)

    # The key

    def _read_secret(self) -> str:
        key = GcpSecret(self._api_key_secret).get_str().strip()
        if not key:
            raise EmptyApiKeySecret("the secret version is empty")
        return key

    def _key_within_budget(self, state: _BatchState) -> str | None:
        """The key, read again from Secret Manager (with backoff) if setup failed."""
        attempt = 0
        while self._key is None:
            attempt += 1
            try:
                self._key = self._read_secret()
            except Exception as error:  # dead-lettered once the budget runs out
                error_class = type(error).__name__
                wait = amplitude.backoff_secs(attempt, self._random.random())
                if self._clock() + wait > state.deadline:
                    reason = (
                        "could not read the Amplitude API key from Secret Manager: "
                        f"{error_class}"
                    )
                    state.fail(
                        state.unresolved(), amplitude.KEY_UNAVAILABLE, reason, None
                    )
                    return None
                _LOGGER.warning(
                    "Could not read the Amplitude API key from Secret Manager (%s) on "
                    "attempt %d; retrying in %.1f s",
                    error_class,
                    attempt,
                    wait,
                )
                self._sleep(wait)
        return self._key

    def _secrets(self) -> list[str]:
        """The key as it may appear in texts (plain and JSON-escaped)."""
        key = self._key or self._api_key
        if not key:
            return []
        return [key, json.dumps(key)[1:-1]]

    def _scrub(self, text: str) -> str:
        return clean_reason(text, self._secrets())

    # Delivery

    def _deliver(self, state: _BatchState, key: str) -> None:
        overhead = len(amplitude.encode_request([], key, self._settings.min_id_length))
        queue: list[tuple[float, int, _Chunk]] = []
        order = itertools.count()
        now = self._clock()
        for positions in self._plan(state, overhead):
            heapq.heappush(queue, (now, next(order), _Chunk(positions)))
        while queue:
            ready_at, _, chunk = heapq.heappop(queue)
            wait = ready_at - self._clock()
            if wait > 0:
                # TODO(#3): waits block this thread, so a batch in backoff or in a 429
                # pause delays the batches queued behind it; timers would free it.
                self._sleep(wait)
                if chunk.paused:
                    self._add_throttling(wait)
            for delay, follow_up in self._send(state, chunk, key):
                if self._clock() + delay > state.deadline:
                    self._give_up(state, follow_up)
                else:
                    entry = (self._clock() + delay, next(order), follow_up)
                    heapq.heappush(queue, entry)

    def _plan(self, state: _BatchState, overhead: int) -> list[list[int]]:
        """Cuts the batch into requests within the count and byte limits.

        An event too large on its own, or that cannot be encoded, is dead-lettered.
        """
        limit = self._settings.max_body_bytes
        most = min(self._settings.batch_size, amplitude.MAX_EVENTS_PER_REQUEST)
        chunks: list[list[int]] = []
        current: list[int] = []
        size = overhead
        for position, outbound in enumerate(state.events):
            try:
                state.encoded[position] = amplitude.encode_body(outbound.event)
            except (TypeError, ValueError) as error:
                reason = f"the event cannot be encoded as JSON ({type(error).__name__})"
                state.fail([position], amplitude.INVALID_EVENT, reason, None)
                continue
            event_size = len(state.encoded[position])
            if overhead + event_size > limit:
                reason = (
                    f"the event alone makes a request of {overhead + event_size} "
                    f"bytes; Amplitude's {self._settings.api} API accepts at most "
                    f"{limit}"
                )
                state.fail([position], amplitude.TOO_LARGE, reason, None)
                continue
            extra = event_size + 1 if current else event_size  # 1: the comma
            if current and (len(current) >= most or size + extra > limit):
                chunks.append(current)
                current, size, extra = [], overhead, event_size
            current.append(position)
            size += extra
        if current:
            chunks.append(current)
        return chunks

    def _send(
        self, state: _BatchState, chunk: _Chunk, key: str
    ) -> list[tuple[float, _Chunk]]:
        """POSTs one chunk; returns the follow-ups with their delays."""
        events = [state.events[p].event for p in chunk.positions]
        self._wait_for_rate_caps(len(events))
        body = amplitude.encode_request(
            [state.encoded[p] for p in chunk.positions],
            key,
            self._settings.min_id_length,
        )
        metrics = self._metrics
        if chunk.attempts:
            metrics.retries.inc()
        chunk.attempts += 1
        metrics.requests.inc()
        metrics.batch_size.update(len(events))
        started = self._clock()
        status, parsed, error = self._post(body)
        metrics.request_latency_ms.update(int((self._clock() - started) * 1000))
        decision = amplitude.decide(status, parsed, events, error)
        return self._apply(state, chunk, decision)

    def _post(self, body: bytes) -> tuple[int | None, object, str | None]:
        """The status and parsed JSON of the answer, or the error when none came."""
        settings = self._settings
        try:
            response = self._session.post(
                settings.url,
                data=body,
                headers=_HEADERS,
                timeout=(settings.connect_timeout_secs, settings.read_timeout_secs),
                allow_redirects=False,
            )
        except requests.RequestException as error:
            return None, None, f"{type(error).__name__}: {error}"
        try:
            parsed = response.json()
        except ValueError:
            parsed = None
        return response.status_code, parsed, None

    def _apply(
        self, state: _BatchState, chunk: _Chunk, decision: Decision
    ) -> list[tuple[float, _Chunk]]:
        """Records the decision's outcomes; returns the follow-ups with delays."""
        positions = chunk.positions

        def pick(indexes: Iterable[int]) -> list[int]:
            return [positions[i] for i in indexes]

        if decision.delivered:
            state.deliver(pick(decision.delivered))
            self._metrics.events_delivered.inc(len(decision.delivered))
        for rejection in decision.rejected:
            state.fail(
                pick(rejection.indexes),
                rejection.kind,
                rejection.reason,
                decision.status,
            )

        summary = self._scrub(decision.summary)

        def follow_up(
            indexes: Iterable[int], paused: bool = False, backoffs: int | None = None
        ) -> _Chunk:
            return dataclasses.replace(
                chunk,
                positions=pick(indexes),
                paused=paused,
                backoffs=chunk.backoffs if backoffs is None else backoffs,
                last_status=decision.status,
                last_summary=summary,
            )

        # A definite answer (a split, a resend, a pause) shows the service is up, so
        # the events it sends on start their backoff schedule afresh.
        follow_ups: list[tuple[float, _Chunk]] = []
        parts = [p for p in (decision.resend_now, *decision.split) if p]
        for part in parts:
            follow_ups.append((0.0, follow_up(part, backoffs=0)))
        if parts:
            self._log_retry(chunk, summary, sum(map(len, parts)), 0.0)
        if decision.resend_after_pause:
            count = len(decision.resend_after_pause)
            self._metrics.events_throttled.inc(count)
            pause = self._settings.throttle_pause_secs
            # Waves one pause apart, each within the per-id rate the 429 names:
            # Amplitude asks to pause a throttled id before it sends again, and a
            # wave sent sooner is throttled again and weighs on the next one.
            waves = amplitude.throttle_waves(
                [state.events[p].event for p in positions],
                decision.resend_after_pause,
                decision.eps_threshold,
            )
            for number, wave in enumerate(waves):
                follow_ups.append(
                    (pause * (number + 1), follow_up(wave, True, backoffs=0))
                )
            self._log_retry(chunk, summary, count, pause)
        if decision.backoff:
            backoffs = chunk.backoffs + 1
            wait = amplitude.backoff_secs(backoffs, self._random.random())
            follow_ups.append((wait, follow_up(decision.backoff, backoffs=backoffs)))
            self._log_retry(chunk, summary, len(decision.backoff), wait)
        return follow_ups

    def _give_up(self, state: _BatchState, chunk: _Chunk) -> None:
        reason = (
            f"gave up retrying after attempt {chunk.attempts}: the retry budget of "
            f"{self._settings.max_retry_secs:g} s (--max_retry_secs) cannot cover the "
            f"next wait; last answer: {chunk.last_summary}"
        )
        state.fail(
            chunk.positions, amplitude.RETRIES_EXHAUSTED, reason, chunk.last_status
        )

    def _log_retry(self, chunk: _Chunk, summary: str, count: int, wait: float) -> None:
        _LOGGER.warning(
            "Attempt %d to Amplitude: %s; resending %d events in %.1f s",
            chunk.attempts,
            summary,
            count,
            wait,
        )

    # Rate caps and throttling time

    def _wait_for_rate_caps(self, events: int) -> None:
        """Waits until the process's token buckets allow one request of ``events``."""
        settings = self._settings
        wait = 0.0
        for cap, rate, amount in (
            ("requests", settings.max_requests_per_sec, 1),
            ("events", settings.max_events_per_sec, events),
        ):
            if rate > 0:
                bucket = self._shared_bucket(cap, rate)
                wait = max(wait, bucket.reserve(amount))
        if wait > 0:
            self._sleep(wait)
            self._add_throttling(wait)

    def _shared_bucket(self, cap: str, rate: float) -> _TokenBucket:
        key = (cap, float(rate), self._clock)
        with self._buckets_lock:
            bucket = self._buckets.get(key)
            if bucket is None:
                bucket = self._buckets[key] = _TokenBucket(float(rate), self._clock)
        return bucket

    def _add_throttling(self, secs: float) -> None:
        """Adds to the throttling counter in whole seconds, carrying the fraction."""
        self._throttling_carry += secs
        whole = int(self._throttling_carry)
        if whole:
            self._metrics.throttling_seconds.inc(whole)
            self._throttling_carry -= whole

    # Outcomes

    def _fail_unexpected(self, state: _BatchState, error: Exception) -> None:
        positions = state.unresolved()
        reason = f"unexpected error while delivering: {type(error).__name__}: {error}"
        state.fail(positions, amplitude.UNEXPECTED_ERROR, self._scrub(reason), None)
        details = "".join(traceback.format_exception(error))
        for secret in self._secrets():
            details = details.replace(secret, MASK)
        _LOGGER.error(
            "Unexpected error while delivering a batch; %d of its %d events are "
            "dead-lettered: %s",
            len(positions),
            len(state.events),
            details,
        )

    def _outputs(self, state: _BatchState) -> Iterator[int | _DeadLetterOutput]:
        if state.delivered:
            yield state.delivered
        secrets = self._secrets()
        metrics = self._metrics
        for failure in state.failures:
            count = len(failure.positions)
            metrics.events_dead_lettered.inc(count)
            metrics.dead_lettered[failure.kind].inc(count)
            _LOGGER.error(
                "%d of %d events of a batch dead-lettered (%s): %s",
                count,
                len(state.events),
                failure.kind,
                clean_reason(failure.reason, secrets),
            )
            for position in failure.positions:
                yield beam.pvalue.TaggedOutput(
                    DEAD_LETTER_TAG,
                    make_dead_letter(
                        state.events[position].message,
                        _STAGE,
                        failure.reason,
                        failure.status,
                        secrets=secrets,
                    ),
                )

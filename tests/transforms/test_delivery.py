"""Tests of PostToAmplitudeFn against the local Amplitude-compatible server.

The DoFn is driven directly (setup, process, teardown) over real HTTP on 127.0.0.1,
with a fake clock whose sleeps only move its time, so no test waits out a backoff.
One small pipeline test runs it behind GroupIntoBatches on the FnApiRunner.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable, Iterator

import apache_beam as beam
import pytest
import requests
from apache_beam.internal import pickler
from apache_beam.metrics.execution import MetricsContainer
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.metrics.metricbase import MetricName
from apache_beam.runners.worker import statesampler
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.utils import counters

from devtools.amplitude_server import AmplitudeServer, FaultConfig
from transforms import amplitude, delivery
from transforms.amplitude import DeliverySettings
from transforms.dead_letter import DeadLetter
from transforms.delivery import DEAD_LETTER_TAG, METRICS_NAMESPACE, PostToAmplitudeFn
from transforms.events import OutboundEvent
from transforms.exposure import RawMessage

API_KEY = "test-api-key"
WRONG_KEY = "wrong-key-7f3a9c2e5b1d"
_INVALID = "400 Invalid field values on some events"


class FakeClock:
    """A monotonic clock that only moves when slept on.

    ``real_scale`` makes each sleep also pass that fraction of its length in real
    time, for the one test whose server counts its throttle window in real time.
    """

    def __init__(
        self,
        real_scale: float = 0.0,
        on_sleep: Callable[[float], None] | None = None,
    ) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []
        self._real_scale = real_scale
        self._on_sleep = on_sleep

    def __call__(self) -> float:
        return self.now

    def sleep(self, secs: float) -> None:
        assert secs >= 0
        self.sleeps.append(secs)
        self.now += secs
        if self._real_scale:
            time.sleep(secs * self._real_scale)
        if self._on_sleep is not None:
            self._on_sleep(secs)


class MetricsReader:
    def __init__(self, container: MetricsContainer) -> None:
        self._container = container

    def counter(self, name: str) -> int:
        cell = self._container.get_counter(MetricName(METRICS_NAMESPACE, name))
        return cell.get_cumulative()

    def distribution(self, name: str):
        cell = self._container.get_distribution(MetricName(METRICS_NAMESPACE, name))
        return cell.get_cumulative()


@pytest.fixture
def metrics() -> Iterator[MetricsReader]:
    """Beam metrics of the DoFn calls made in the test, as a runner would collect."""
    sampler = statesampler.StateSampler("", counters.CounterFactory())
    statesampler.set_current_tracker(sampler)
    container = MetricsContainer("PostToAmplitude")
    state = sampler.scoped_state(
        "PostToAmplitude", "process", metrics_container=container
    )
    sampler.start()
    try:
        with state:
            yield MetricsReader(container)
    finally:
        sampler.stop()
        statesampler.set_current_tracker(None)


@pytest.fixture
def start_server() -> Iterator[Callable[..., AmplitudeServer]]:
    started: list[AmplitudeServer] = []

    def start(**kwargs) -> AmplitudeServer:
        server = AmplitudeServer(api_keys=[API_KEY], **kwargs).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def _outbound(
    index: int, device: str | None = None, user: str | None = None, **fields
) -> OutboundEvent:
    event = {
        "event_type": "$identify",
        "device_id": device or f"device-{index:04d}",
        "time": 1_700_000_000_000 + index,
        "user_properties": {"$set": {"KAM_EXPERIMENT_1": "KAM_VARIATION_2"}},
        "insert_id": f"insert-{index:04d}",
    }
    if user is not None:
        event["user_id"] = user
    event.update(fields)
    payload = json.dumps({"visitor_code": f"visitor-{index}", "n": index}).encode()
    return OutboundEvent(event=event, message=RawMessage(payload, {"i": str(index)}))


def _settings(server: AmplitudeServer, **changes) -> DeliverySettings:
    values = {
        "url": amplitude.api_url("us", "http", server.url),
        "batch_size": 100,
        "max_retry_secs": 300.0,
        "throttle_pause_secs": 30.0,
        "connect_timeout_secs": 2.0,
        "read_timeout_secs": 5.0,
    }
    values.update(changes)
    return DeliverySettings(**values)


def _run(
    fn: PostToAmplitudeFn,
    events: list[OutboundEvent],
    *batches: list[OutboundEvent],
    shard_key: int = 0,
) -> tuple[list[int], list[DeadLetter]]:
    """Sets the DoFn up, processes each batch, tears it down; splits the outputs."""
    delivered: list[int] = []
    dead: list[DeadLetter] = []
    fn.setup()
    try:
        for batch in (events, *batches):
            for output in fn.process((shard_key, iter(batch))):
                if isinstance(output, beam.pvalue.TaggedOutput):
                    assert output.tag == DEAD_LETTER_TAG
                    dead.append(output.value)
                else:
                    delivered.append(output)
    finally:
        fn.teardown()
    return delivered, dead


def _accepted_ids(server: AmplitudeServer) -> list[str]:
    return sorted(event["insert_id"] for event in server.accepted_events())


def _ids(events: list[OutboundEvent]) -> list[str]:
    return sorted(e.event["insert_id"] for e in events)


def _payload_index(dead_letter: DeadLetter) -> int:
    return json.loads(dead_letter.message.payload)["n"]


# Construction and lifecycle


@pytest.mark.parametrize(
    "keys",
    [{}, {"api_key": API_KEY, "api_key_secret": "projects/p/secrets/s/versions/1"}],
)
def test_exactly_one_key_source_is_required(keys: dict) -> None:
    settings = DeliverySettings(url="http://127.0.0.1:1/2/httpapi")
    with pytest.raises(ValueError, match="exactly one"):
        PostToAmplitudeFn(settings, **keys)


def test_the_dofn_pickles_before_setup_and_teardown_closes_the_session() -> None:
    fn = PostToAmplitudeFn(
        DeliverySettings(url="http://127.0.0.1:1/x"), api_key=API_KEY
    )
    copy = pickler.loads(pickler.dumps(fn))
    copy.setup()
    assert isinstance(copy._session, requests.Session)
    adapter = copy._session.get_adapter("https://api2.amplitude.com/2/httpapi")
    assert adapter._pool_maxsize == 1
    assert copy._session.trust_env is True
    copy.teardown()
    assert copy._session is None


# Delivery and retries


def test_a_batch_is_delivered_in_one_request(start_server, metrics) -> None:
    server = start_server()
    events = [_outbound(i) for i in range(5)]
    clock = FakeClock()
    fn = PostToAmplitudeFn(
        _settings(server), api_key=API_KEY, clock=clock, sleep=clock.sleep
    )
    delivered, dead = _run(fn, events)
    assert delivered == [5]
    assert dead == []
    assert _accepted_ids(server) == _ids(events)
    assert server.stats()["requests"] == 1
    assert clock.sleeps == []
    assert metrics.counter("requests") == 1
    assert metrics.counter("events_delivered") == 5
    assert metrics.counter("retries") == 0
    assert metrics.distribution("batch_size").sum == 5


def test_a_503_is_retried_after_a_backoff_and_delivered_once(
    start_server, metrics, caplog
) -> None:
    caplog.set_level(logging.WARNING, logger="transforms.delivery")
    server = start_server(faults=FaultConfig(script=[503]))
    events = [_outbound(i) for i in range(4)]
    clock = FakeClock()
    fn = PostToAmplitudeFn(
        _settings(server), api_key=API_KEY, clock=clock, sleep=clock.sleep
    )
    delivered, dead = _run(fn, events)
    assert delivered == [4]
    assert dead == []
    assert _accepted_ids(server) == _ids(events)
    assert server.stats()["by_status"] == {"503": 1, "200": 1}
    assert len(clock.sleeps) == 1 and 0 <= clock.sleeps[0] <= 0.5
    assert metrics.counter("requests") == 2
    assert metrics.counter("retries") == 1
    assert metrics.counter("events_delivered") == 4
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert (
        "Attempt 1 to Amplitude: 503 Service unavailable; resending 4 events"
        in (warnings[0])
    )


def test_when_the_budget_runs_out_the_batch_is_dead_lettered_with_the_last_status(
    start_server, metrics, caplog
) -> None:
    caplog.set_level(logging.ERROR, logger="transforms.delivery")
    server = start_server(faults=FaultConfig(script=[503] * 3 + [502] * 100))
    events = [_outbound(i) for i in range(3)]
    clock = FakeClock()
    fn = PostToAmplitudeFn(
        _settings(server, max_retry_secs=20.0),
        api_key=API_KEY,
        clock=clock,
        sleep=clock.sleep,
    )
    delivered, dead = _run(fn, events)
    assert delivered == []
    assert server.accepted_count() == 0
    assert sorted(_payload_index(d) for d in dead) == [0, 1, 2]
    attempts = server.stats()["requests"]
    assert attempts >= 4
    assert sum(clock.sleeps) <= 20.0
    for ceiling, wait in zip([0.5, 1, 2, 4, 8, 16], clock.sleeps, strict=False):
        assert 0 <= wait <= ceiling
    expected = (
        f"gave up retrying after attempt {attempts}: the retry budget of 20 s "
        "(--max_retry_secs) cannot cover the next wait; last answer: 502 Bad gateway"
    )
    assert {(d.stage, d.status, d.reason) for d in dead} == {("deliver", 502, expected)}
    assert dead[0].message.attributes == {"i": "0"}
    assert metrics.counter("retries") == attempts - 1
    assert metrics.counter("events_dead_lettered") == 3
    assert metrics.counter("dead_lettered_retries_exhausted") == 3
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert errors == [
        f"3 of 3 events of a batch dead-lettered (retries_exhausted): {expected}"
    ]


def test_a_400_listing_events_dead_letters_exactly_those_and_delivers_the_rest(
    start_server, metrics
) -> None:
    server = start_server()
    events = [_outbound(i) for i in range(6)]
    events[1] = _outbound(1, user="abc")
    events[4] = _outbound(4, time="yesterday")
    events[5] = _outbound(5, device="null")
    clock = FakeClock()
    fn = PostToAmplitudeFn(
        _settings(server), api_key=API_KEY, clock=clock, sleep=clock.sleep
    )
    delivered, dead = _run(fn, events)
    assert delivered == [3]
    assert _accepted_ids(server) == _ids([events[0], events[2], events[3]])
    reasons = {_payload_index(d): (d.status, d.reason) for d in dead}
    assert reasons == {
        1: (
            400,
            f"Amplitude rejected the event: invalid id length of user_id ({_INVALID})",
        ),
        4: (400, f"Amplitude rejected the event: invalid field time ({_INVALID})"),
        5: (400, f"Amplitude rejected the event: invalid field device_id ({_INVALID})"),
    }
    assert clock.sleeps == []
    assert metrics.counter("requests") == 2
    assert metrics.counter("retries") == 1
    assert metrics.counter("dead_lettered_invalid_event") == 3


def test_an_invalid_key_dead_letters_the_batch_and_never_shows_the_key(
    start_server, metrics, caplog
) -> None:
    caplog.set_level(logging.DEBUG)
    server = start_server()
    events = [_outbound(i) for i in range(3)]
    clock = FakeClock()
    fn = PostToAmplitudeFn(
        _settings(server), api_key=WRONG_KEY, clock=clock, sleep=clock.sleep
    )
    delivered, dead = _run(fn, events)
    assert delivered == []
    assert server.accepted_count() == 0
    assert server.stats()["requests"] == 1
    expected = (
        "Amplitude rejected the API key (400 Invalid API key); check the key; a "
        "project in Amplitude's EU data center needs --amplitude_region eu"
    )
    assert [(d.status, d.reason) for d in dead] == [(400, expected)] * 3
    assert metrics.counter("dead_lettered_rejected_batch") == 3
    assert any(r.name.startswith("urllib3") for r in caplog.records)
    for record in caplog.records:
        assert WRONG_KEY not in record.getMessage()
    assert WRONG_KEY not in caplog.text


def test_an_unexpected_error_dead_letters_the_batch_without_the_key(
    start_server, metrics, caplog
) -> None:
    caplog.set_level(logging.DEBUG)
    server = start_server()
    events = [_outbound(i) for i in range(2)]
    clock = FakeClock()
    fn = PostToAmplitudeFn(
        _settings(server), api_key=WRONG_KEY, clock=clock, sleep=clock.sleep
    )
    fn.setup()

    def explode(*args, **kwargs):
        raise RuntimeError(f"cannot send {kwargs['data'][:40]!r} with {WRONG_KEY}")

    fn._session.post = explode
    outputs = list(fn.process((0, events)))
    fn.teardown()
    dead = [o.value for o in outputs]
    assert len(dead) == 2
    assert {(d.status, d.reason.split(":")[0]) for d in dead} == {
        (None, "unexpected error while delivering")
    }
    assert all(WRONG_KEY not in d.reason and "***" in d.reason for d in dead)
    assert metrics.counter("dead_lettered_unexpected_error") == 2
    assert "RuntimeError" in caplog.text
    assert WRONG_KEY not in caplog.text


def test_a_connection_error_naming_the_key_is_scrubbed(start_server, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    server = start_server()
    clock = FakeClock()
    fn = PostToAmplitudeFn(
        _settings(server, max_retry_secs=0.0),
        api_key=WRONG_KEY,
        clock=clock,
        sleep=clock.sleep,
    )
    fn.setup()

    def refuse(*args, **kwargs):
        raise requests.ConnectionError(f"refused for {WRONG_KEY}")

    fn._session.post = refuse
    [output] = list(fn.process((0, [_outbound(0)])))
    fn.teardown()
    assert output.value.status is None
    assert output.value.reason == (
        "gave up retrying after attempt 1: the retry budget of 0 s (--max_retry_secs) "
        "cannot cover the next wait; last answer: no answer from Amplitude "
        "(ConnectionError: refused for ***)"
    )
    assert WRONG_KEY not in caplog.text


def test_a_413_splits_the_batch_and_dead_letters_an_event_too_large_alone(
    start_server, metrics
) -> None:
    server = start_server(http_max_bytes=1500)
    events = [_outbound(i) for i in range(12)]
    events[7] = _outbound(7, event_properties={"blob": "x" * 1000})
    events[9] = _outbound(9, event_properties={"blob": "y" * 1400})
    clock = FakeClock()
    fn = PostToAmplitudeFn(
        _settings(server), api_key=API_KEY, clock=clock, sleep=clock.sleep
    )
    delivered, dead = _run(fn, events)
    assert delivered == [11]
    assert _accepted_ids(server) == _ids(events[:9] + events[10:])
    assert len(server.accepted_events()) == 11
    assert [(_payload_index(d), d.status, d.reason) for d in dead] == [
        (
            9,
            413,
            "the event alone is larger than Amplitude accepts (413 Payload too large)",
        )
    ]
    assert clock.sleeps == []
    assert server.stats()["by_status"]["413"] >= 3
    assert metrics.counter("dead_lettered_too_large") == 1
    assert metrics.counter("retries") == metrics.counter("requests") - 1


class _CeilingRandom(random.Random):
    """Draws 1.0, so each jittered wait is the ceiling of its attempt."""

    def random(self) -> float:
        return 1.0


def test_a_definite_answer_restarts_the_backoff_schedule(
    start_server, monkeypatch
) -> None:
    # 503, 503: two backoffs (ceilings 0.5 s, 1 s); then a 413 splits the batch and
    # the halves' next 503 waits at most 0.5 s again, not 2 s.
    monkeypatch.setattr(delivery.random, "Random", _CeilingRandom)
    server = start_server(faults=FaultConfig(script=[503, 503, 413, 503, 200, 200]))
    events = [_outbound(i) for i in range(4)]
    clock = FakeClock()
    fn = PostToAmplitudeFn(
        _settings(server), api_key=API_KEY, clock=clock, sleep=clock.sleep
    )
    delivered, dead = _run(fn, events)
    assert (sum(delivered), dead) == (4, [])
    assert _accepted_ids(server) == _ids(events)
    assert clock.sleeps == [0.5, 1.0, 0.5]


def test_a_batch_over_the_size_or_count_limit_is_split_before_posting(
    start_server, metrics, monkeypatch
) -> None:
    monkeypatch.setitem(amplitude.MAX_BODY_BYTES, "http", 1000)
    server = start_server()
    events = [_outbound(i) for i in range(8)]
    events[3] = _outbound(3, event_properties={"blob": "z" * 1000})
    clock = FakeClock()
    fn = PostToAmplitudeFn(
        _settings(server, batch_size=3), api_key=API_KEY, clock=clock, sleep=clock.sleep
    )
    delivered, dead = _run(fn, events)
    assert delivered == [7]
    assert _accepted_ids(server) == _ids(events[:3] + events[4:])
    assert server.stats()["by_status"] == {"200": server.stats()["requests"]}
    assert server.stats()["events_received"] == 7
    [too_large] = dead
    assert (_payload_index(too_large), too_large.status) == (3, None)
    assert too_large.reason.startswith("the event alone makes a request of ")
    assert too_large.reason.endswith(
        " bytes; Amplitude's http API accepts at most 1000"
    )
    sizes = metrics.distribution("batch_size")
    assert sizes.max <= 3 and sizes.sum == 7
    assert metrics.counter("retries") == 0


def test_throttled_events_are_resent_after_the_pause_and_delivered_once(
    start_server, metrics
) -> None:
    # The server counts its throttle window in real time, so each fake second of a
    # sleep also passes 1/50 s for real: the 30 s pause is 0.6 s, beyond the 0.5 s
    # window in which a device may send 2 events (4 per second).
    server = start_server(http_eps_per_device=4, throttle_window_secs=0.5)
    devices = ["device-a", "device-a", "device-b", "device-b"]
    devices += ["device-a", "device-a", "device-c", "device-c"]
    events = [_outbound(i, device=d) for i, d in enumerate(devices)]
    clock = FakeClock(real_scale=1 / 50)
    fn = PostToAmplitudeFn(
        _settings(server, batch_size=4),
        api_key=API_KEY,
        clock=clock,
        sleep=clock.sleep,
    )
    delivered, dead = _run(fn, events)
    assert dead == []
    assert delivered == [8]
    assert _accepted_ids(server) == _ids(events)
    assert server.stats()["duplicates_absorbed"] == 0
    assert server.stats()["by_status"] == {"200": 3, "429": 1}
    assert clock.sleeps == [30.0]
    assert metrics.counter("events_throttled") == 2
    assert metrics.counter("cumulativeThrottlingSeconds") == 30
    assert metrics.counter("requests") == 4
    assert metrics.counter("retries") == 2


def test_a_device_with_more_events_than_its_rate_gets_through_in_waves(
    start_server,
) -> None:
    # 10 events of one device in one request can never pass a limit of 4 per second
    # however long they pause; resent in waves of 3, one pause apart, they do.
    server = start_server(http_eps_per_device=4, throttle_window_secs=1.0)
    events = [_outbound(i, device="device-hot") for i in range(10)]
    events += [_outbound(10 + i) for i in range(3)]
    # The server's window runs in real time, so this test waits for real (~5 s).
    clock = FakeClock(real_scale=1.0)
    fn = PostToAmplitudeFn(
        _settings(server, batch_size=20, throttle_pause_secs=1.2),
        api_key=API_KEY,
        clock=clock,
        sleep=clock.sleep,
    )
    delivered, dead = _run(fn, events)
    assert dead == []
    assert sum(delivered) == 13
    assert _accepted_ids(server) == _ids(events)
    hot = [
        e["insert_id"]
        for e in server.accepted_events()
        if e["device_id"] == "device-hot"
    ]
    assert hot == [f"insert-{i:04d}" for i in range(10)]
    assert clock.sleeps == pytest.approx([1.2, 1.2, 1.2, 1.2], abs=0.05)


def test_events_over_the_daily_quota_are_dead_lettered(start_server, metrics) -> None:
    server = start_server(daily_quota_per_device=2)
    devices = ["device-a", "device-a", "device-a", "device-b"]
    events = [_outbound(i, device=d) for i, d in enumerate(devices)]
    clock = FakeClock()
    fn = PostToAmplitudeFn(
        _settings(server, batch_size=2), api_key=API_KEY, clock=clock, sleep=clock.sleep
    )
    delivered, dead = _run(fn, events)
    assert delivered == [3]
    assert _accepted_ids(server) == _ids([events[0], events[1], events[3]])
    assert [(_payload_index(d), d.status, d.reason) for d in dead] == [
        (
            2,
            429,
            "the daily event quota of the event's device_id is used up (429 Too many "
            "requests for some devices and users); Amplitude accepts its events again "
            "once its count over the last 24 hours falls below the quota",
        )
    ]
    assert clock.sleeps == []
    assert metrics.counter("dead_lettered_daily_quota") == 1


def test_dropped_connections_lose_nothing(start_server, metrics) -> None:
    server = start_server(faults=FaultConfig(script=[0, 0]))
    events = [_outbound(i) for i in range(5)]
    clock = FakeClock()
    fn = PostToAmplitudeFn(
        _settings(server), api_key=API_KEY, clock=clock, sleep=clock.sleep
    )
    delivered, dead = _run(fn, events)
    assert (delivered, dead) == ([5], [])
    assert _accepted_ids(server) == _ids(events)
    assert server.stats()["dropped_connections"] == 2
    assert metrics.counter("retries") == 2


def test_random_drops_and_errors_after_ingestion_deliver_each_event_exactly_once(
    start_server,
) -> None:
    faults = FaultConfig(
        drop_rate=0.25, error_after_ingest_rate=0.25, server_error_rate=0.1, seed=11
    )
    server = start_server(faults=faults)
    events = [_outbound(i, device=f"device-{i % 7}") for i in range(60)]
    batches = [events[i : i + 10] for i in range(0, 60, 10)]
    clock = FakeClock()
    fn = PostToAmplitudeFn(
        _settings(server, batch_size=5), api_key=API_KEY, clock=clock, sleep=clock.sleep
    )
    delivered, dead = _run(fn, *batches)
    assert dead == []
    assert sum(delivered) == 60
    accepted = [event["insert_id"] for event in server.accepted_events()]
    assert sorted(accepted) == _ids(events)
    stats = server.stats()
    assert stats["dropped_connections"] > 0
    assert stats["duplicates_absorbed"] > 0


def test_a_server_slower_than_the_read_timeout_is_retried(
    start_server, metrics, caplog
) -> None:
    caplog.set_level(logging.WARNING, logger="transforms.delivery")
    server = start_server(faults=FaultConfig(delay_secs=0.5))

    def heal(_: float) -> None:
        server.faults = FaultConfig()

    events = [_outbound(i) for i in range(3)]
    clock = FakeClock(on_sleep=heal)
    fn = PostToAmplitudeFn(
        _settings(server, read_timeout_secs=0.2),
        api_key=API_KEY,
        clock=clock,
        sleep=clock.sleep,
    )
    delivered, dead = _run(fn, events)
    assert (delivered, dead) == ([3], [])
    assert len(clock.sleeps) == 1
    assert metrics.counter("retries") == 1
    assert "no answer from Amplitude (ReadTimeout" in caplog.text
    deadline = time.monotonic() + 5
    while server.stats()["requests"] < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sorted(e["insert_id"] for e in server.accepted_events()) == _ids(events)


def test_an_event_that_cannot_be_encoded_is_dead_lettered_alone(start_server) -> None:
    server = start_server()
    events = [_outbound(0), _outbound(1, event_properties={"tags": {"a", "b"}})]
    fn = PostToAmplitudeFn(_settings(server), api_key=API_KEY)
    delivered, dead = _run(fn, events)
    assert delivered == [1]
    assert [(_payload_index(d), d.reason) for d in dead] == [
        (1, "the event cannot be encoded as JSON (TypeError)")
    ]


# Rate caps


def test_the_request_rate_cap_spaces_requests_and_counts_throttling(
    start_server, metrics
) -> None:
    server = start_server()
    events = [_outbound(i) for i in range(5)]
    clock = FakeClock()
    fn = PostToAmplitudeFn(
        _settings(server, batch_size=1, max_requests_per_sec=2),
        api_key=API_KEY,
        clock=clock,
        sleep=clock.sleep,
    )
    delivered, dead = _run(fn, events)
    assert (delivered, dead) == ([5], [])
    assert clock.sleeps == [0.5, 0.5, 0.5]
    assert metrics.counter("cumulativeThrottlingSeconds") == 1


def test_the_event_rate_cap_is_shared_by_the_instances_and_shards_of_a_process(
    start_server,
) -> None:
    server = start_server()
    clock = FakeClock()
    settings = _settings(server, batch_size=2, max_events_per_sec=4)
    first = PostToAmplitudeFn(settings, api_key=API_KEY, clock=clock, sleep=clock.sleep)
    second = PostToAmplitudeFn(
        settings, api_key=API_KEY, clock=clock, sleep=clock.sleep
    )
    _run(first, [_outbound(i) for i in range(4)])
    assert clock.sleeps == []
    _run(second, [_outbound(i) for i in range(4, 6)], shard_key=1)
    assert clock.sleeps == [0.5]
    _run(second, [_outbound(i) for i in range(6, 8)], shard_key=2)
    assert clock.sleeps == [0.5, 0.5]
    assert server.accepted_count() == 8


# The key from Secret Manager


class _FlakySecret:
    """Stands in for GcpSecret: fails ``failures`` reads, then returns the key."""

    calls: list[str] = []
    failures = 0

    def __init__(self, version_name: str) -> None:
        self._version_name = version_name

    def get_str(self) -> str:
        _FlakySecret.calls.append(self._version_name)
        if len(_FlakySecret.calls) <= _FlakySecret.failures:
            raise _SecretUnavailable("403 Permission denied on resource")
        return f" {API_KEY}\n"


class _SecretUnavailable(Exception):
    pass


SECRET = "projects/demo/secrets/amplitude-key/versions/latest"


@pytest.fixture
def flaky_secret(monkeypatch) -> type[_FlakySecret]:
    monkeypatch.setattr(_FlakySecret, "calls", [])
    monkeypatch.setattr(delivery, "GcpSecret", _FlakySecret)
    return _FlakySecret


def test_a_secret_unreadable_at_setup_is_read_again_in_process(
    start_server, flaky_secret, monkeypatch, caplog
) -> None:
    monkeypatch.setattr(flaky_secret, "failures", 2)
    server = start_server()
    clock = FakeClock()
    fn = PostToAmplitudeFn(
        _settings(server), api_key_secret=SECRET, clock=clock, sleep=clock.sleep
    )
    delivered, dead = _run(fn, [_outbound(0)])
    assert (delivered, dead) == ([1], [])
    assert flaky_secret.calls == [SECRET] * 3
    assert len(clock.sleeps) == 1
    assert "_SecretUnavailable" in caplog.text
    assert API_KEY not in caplog.text


def test_a_secret_never_readable_dead_letters_within_the_budget(
    start_server, flaky_secret, monkeypatch, metrics
) -> None:
    monkeypatch.setattr(flaky_secret, "failures", 10_000)
    server = start_server()
    clock = FakeClock()
    fn = PostToAmplitudeFn(
        _settings(server, max_retry_secs=10.0),
        api_key_secret=SECRET,
        clock=clock,
        sleep=clock.sleep,
    )
    delivered, dead = _run(fn, [_outbound(0), _outbound(1)])
    assert delivered == []
    assert [(d.status, d.reason) for d in dead] == [
        (
            None,
            "could not read the Amplitude API key from Secret Manager: "
            "_SecretUnavailable",
        )
    ] * 2
    assert sum(clock.sleeps) <= 10.0
    assert server.stats()["requests"] == 0
    assert metrics.counter("dead_lettered_key_unavailable") == 2


# In a pipeline


def test_in_a_pipeline_behind_group_into_batches(start_server) -> None:
    server = start_server(faults=FaultConfig(script=[503]))
    events = [_outbound(i) for i in range(12)]
    events[5] = _outbound(5, user="abc")
    settings = _settings(server, batch_size=4)
    pipeline = BeamTestPipeline(runner="FnApiRunner")
    results = (
        pipeline
        | "CreateEvents" >> beam.Create(events)
        | "KeyByShard"
        >> beam.Map(lambda e: (0, e)).with_output_types(tuple[int, OutboundEvent])
        | "BatchEvents" >> beam.GroupIntoBatches(4)
        | "PostToAmplitude"
        >> beam.ParDo(PostToAmplitudeFn(settings, api_key=API_KEY)).with_outputs(
            DEAD_LETTER_TAG, main="delivered"
        )
    )
    assert_that(results.delivered, equal_to([4, 4, 3]), label="CheckDelivered")
    dead = results[DEAD_LETTER_TAG] | "Describe" >> beam.Map(
        lambda d: (_payload_index(d), d.stage, d.status, d.reason)
    )
    reason = f"Amplitude rejected the event: invalid id length of user_id ({_INVALID})"
    assert_that(dead, equal_to([(5, "deliver", 400, reason)]), label="CheckDeadLetters")
    result = pipeline.run()
    result.wait_until_finish()

    assert _accepted_ids(server) == _ids(events[:5] + events[6:])
    query = result.metrics().query(MetricsFilter().with_namespace(METRICS_NAMESPACE))
    counters_ = {c.key.metric.name: c.committed for c in query["counters"]}
    assert counters_ == {
        "requests": 5,
        "retries": 2,
        "events_delivered": 11,
        "events_dead_lettered": 1,
        "dead_lettered_invalid_event": 1,
    }
    [sizes] = [
        d.committed for d in query["distributions"] if d.key.metric.name == "batch_size"
    ]
    assert (sizes.count, sizes.sum, sizes.min, sizes.max) == (5, 19, 3, 4)

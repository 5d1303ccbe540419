"""End-to-end streaming runs: the Pub/Sub emulator → the real job → a local Amplitude.

Each test starts the job with ``pipeline.main.run`` on the BundleBasedDirectRunner,
reading fresh topics on the emulator and delivering to the local Amplitude-compatible
server, publishes exposures, and checks what Amplitude accepted and what reached the
dead-letter subscription. The job is cancelled at the end of each test.

The DirectRunner's Pub/Sub read gets short idle pulls (``pipeline.local_pubsub``), so
that a partial batch is sent ``--max_buffering_secs`` after its first event instead of
after the emulator's ~29 s empty pull.
"""

from __future__ import annotations

import collections
import json
import re
import time
import uuid
from collections.abc import Iterator

import pytest

from devtools.amplitude_server import AmplitudeServer
from pipeline import local_pubsub
from pipeline.main import run
from pipeline.options import JobConfig, OptionsError
from tests.e2e.emulator import PubSubScratch, emulator_host
from transforms.events import to_amplitude_events
from transforms.exposure import RawMessage, parse_message

pytestmark = [pytest.mark.e2e, pytest.mark.emulator]

API_KEY = "test-api-key"
SILENCED_DEVICE = "silenced-visitor-0001"
WAIT_SECS = 90.0
NO_MORE_DEAD_LETTERS_SECS = 3.0
FAILED_AT = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")


@pytest.fixture(scope="module")
def pubsub_host() -> Iterator[str]:
    with emulator_host() as host:
        yield host


@pytest.fixture
def scratch(pubsub_host: str) -> Iterator[PubSubScratch]:
    topics = PubSubScratch(pubsub_host).create()
    try:
        yield topics
    finally:
        topics.delete()


@pytest.fixture
def amplitude() -> Iterator[AmplitudeServer]:
    with AmplitudeServer(
        api_keys=(API_KEY,), silenced_devices=(SILENCED_DEVICE,)
    ) as server:
        yield server


@pytest.fixture
def job(scratch: PubSubScratch, amplitude: AmplitudeServer) -> Iterator[JobConfig]:
    """The real streaming job, running until the end of the test.

    The job itself installs the short local pulls (it runs on a DirectRunner), so
    these tests also prove that it does.
    """
    try:
        result, config = run(
            [
                f"--input_subscription={scratch.input_subscription}",
                f"--dead_letter_topic={scratch.dead_letter_topic}",
                f"--amplitude_api_key={API_KEY}",
                f"--amplitude_endpoint={amplitude.url}",
                "--runner=BundleBasedDirectRunner",
                "--max_buffering_secs=0.5",
                "--num_shards=4",
            ]
        )
        try:
            yield config
        finally:
            result.cancel()
    finally:
        local_pubsub.uninstall_fast_local_pull()


def exposure(visitor_code: str, offset_ms: int = 0, **fields: object) -> bytes:
    record = {
        "visitor_code": visitor_code,
        "experiment_id": 241398,
        "variation_id": 912345,
        "timestamp": int(time.time() * 1000) + offset_ms,
        **fields,
    }
    return json.dumps(record).encode("utf-8")


def insert_ids(data: bytes, config: JobConfig) -> list[str]:
    """The insert_ids the job gives the events of a valid message."""
    parsed = parse_message(RawMessage(data), "json")
    return [event["insert_id"] for event in to_amplitude_events(parsed, config.mapping)]


def wait_until_accepted(
    server: AmplitudeServer, wanted: set[str], timeout: float = WAIT_SECS
) -> set[str]:
    """Polls the server until it accepted every insert_id in ``wanted``."""
    deadline = time.monotonic() + timeout
    accepted: set[str] = set()
    while time.monotonic() < deadline:
        accepted = set(server.acceptance_times())
        if wanted <= accepted:
            break
        time.sleep(0.1)
    return accepted


def test_delivers_valid_exposures_and_dead_letters_the_rest(
    scratch: PubSubScratch, amplitude: AmplitudeServer, job: JobConfig
) -> None:
    tag = uuid.uuid4().hex[:8]
    valid = [
        exposure(
            f"visitor-{tag}-a",
            cross_device_id="customer-7869795",
            amplitude_device_id=f"device-{tag}-a",
            amplitude_session_id=1796402126005,
            experiment_key="pricing-page-layout",
            variation_key="detailed",
        ),
        exposure(f"visitor-{tag}-b", 1, experiment_id="241402", variation_id="0"),
        exposure(f"visitor-{tag}-b", 2, timestamp="2026-12-04T16:42:00.302+00:00"),
        *(exposure(f"visitor-{tag}-c", n) for n in range(3, 7)),
    ]
    malformed = f'{{"visitor_code": "visitor-{tag}-x", "experiment_id": 2414'.encode()
    # data -> (stage, words the reason must contain, status attribute)
    invalid = {
        malformed: ("parse", ["malformed JSON"], ""),
        exposure(f"visitor-{tag}-d", timestamp=1796402470): (
            "parse",
            ["timestamp", "seconds"],
            "",
        ),
        exposure(f"visitor-{tag}-e", cross_device_id="null"): (
            "map",
            ["user_id", "reserved"],
            "",
        ),
        exposure("ab12"): ("map", ["device_id", "at least 5"], ""),
        exposure(SILENCED_DEVICE): ("deliver", ["silenced"], "400"),
    }
    wanted = {iid for data in valid for iid in insert_ids(data, job)}
    assert len(wanted) == len(valid)

    for data in valid:
        scratch.publish(data, {"origin": "e2e"})
    for data in invalid:
        # A stale stage attribute: the job ignores it and sets its own.
        scratch.publish(data, {"origin": "e2e", "stage": "stale"})

    accepted = wait_until_accepted(amplitude, wanted)
    assert wanted <= accepted
    dead_letters = scratch.pull_dead_letters(len(invalid), timeout=WAIT_SECS)
    dead_letters += scratch.pull_dead_letters(1, timeout=NO_MORE_DEAD_LETTERS_SECS)

    counts = collections.Counter(e["insert_id"] for e in amplitude.accepted_events())
    assert counts == {iid: 1 for iid in wanted}
    assert amplitude.accepted_count() == len(valid)
    assert amplitude.stats()["duplicates_absorbed"] == 0

    by_data = {
        bytes(message.data): dict(message.attributes) for message in dead_letters
    }
    assert len(dead_letters) == len(invalid)
    assert set(by_data) == set(invalid)
    for data, (stage, words, status) in invalid.items():
        attributes = by_data[data]
        assert attributes["stage"] == stage, data
        for word in words:
            assert word in attributes["reason"], (data, attributes["reason"])
        assert attributes["status"] == status, data
        assert FAILED_AT.match(attributes["failed_at"]), attributes["failed_at"]
        assert attributes["origin"] == "e2e"
        assert set(attributes) == {"origin", "stage", "reason", "status", "failed_at"}


def test_a_fixed_dead_letter_fed_back_is_delivered(
    scratch: PubSubScratch, amplitude: AmplitudeServer, job: JobConfig
) -> None:
    tag = uuid.uuid4().hex[:8]
    seconds = exposure(f"visitor-{tag}-s", timestamp=int(time.time()))
    silenced = exposure(SILENCED_DEVICE)
    scratch.publish(seconds, {"origin": "e2e"})
    scratch.publish(silenced, {"origin": "e2e"})
    dead_letters = scratch.pull_dead_letters(2, timeout=WAIT_SECS)
    assert {bytes(m.data) for m in dead_letters} == {seconds, silenced}
    assert amplitude.accepted_count() == 0

    # Fix the causes: milliseconds in the payload; Amplitude no longer silences.
    amplitude.silenced_devices = frozenset()
    fixed = []
    for message in dead_letters:
        data, attributes = bytes(message.data), dict(message.attributes)
        assert attributes["stage"] in ("parse", "deliver")
        if data == seconds:
            record = json.loads(data)
            record["timestamp"] *= 1000
            data = json.dumps(record).encode("utf-8")
        # Fed back with the dead letter's attributes, which the job ignores.
        scratch.publish(data, attributes)
        fixed.append(data)

    wanted = {iid for data in fixed for iid in insert_ids(data, job)}
    assert wanted <= wait_until_accepted(amplitude, wanted)
    assert amplitude.accepted_count() == len(fixed)
    assert scratch.pull_dead_letters(1, timeout=NO_MORE_DEAD_LETTERS_SECS) == []


def test_a_missing_dead_letter_topic_is_refused_before_anything_is_read(
    scratch: PubSubScratch, amplitude: AmplitudeServer
) -> None:
    # Locally each message is acknowledged as it is read: a job that read and then
    # failed to publish a dead letter would have lost what it read.
    missing = f"projects/{scratch.project}/topics/no-such-dead-letter-topic"
    with pytest.raises(OptionsError, match="--dead_letter_topic .* does not exist"):
        run(
            [
                f"--input_subscription={scratch.input_subscription}",
                f"--dead_letter_topic={missing}",
                f"--amplitude_api_key={API_KEY}",
                f"--amplitude_endpoint={amplitude.url}",
                "--runner=BundleBasedDirectRunner",
            ]
        )
    missing_subscription = f"projects/{scratch.project}/subscriptions/no-such-input"
    with pytest.raises(OptionsError, match="--input_subscription .* does not exist"):
        run(
            [
                f"--input_subscription={missing_subscription}",
                f"--dead_letter_topic={scratch.dead_letter_topic}",
                f"--amplitude_api_key={API_KEY}",
                f"--amplitude_endpoint={amplitude.url}",
                "--runner=BundleBasedDirectRunner",
            ]
        )

"""A small fault soak: ``python -m pipeline`` against a faulty local Amplitude.

About 2,000 exposures (many visitors, a few experiments, some with cross-device and
Amplitude ids, 2 % invalid) are delivered while the server answers 5xx to 20 % of the
requests, drops 5 % of the connections (before or after ingesting), fails 5 % after
ingesting, throttles devices above 30 events/s and refuses requests over a small byte
limit with 413. Every valid exposure must be accepted exactly once under its own
``insert_id``; every invalid one must be a dead letter with its reason.

Run it with ``pytest -s`` to see the figures.
"""

from __future__ import annotations

import json
import random
import time

import pytest

from devtools.amplitude_server import AmplitudeServer, FaultConfig
from tests.e2e.jobs import read_dead_letters, run_job
from transforms.events import MappingSettings, to_amplitude_events
from transforms.exposure import InvalidExposure, RawMessage, parse_message
from transforms.mapping import shard_of

pytestmark = pytest.mark.e2e

API_KEY = "test-api-key"
JOB_TIMEOUT_SECS = 150
SEED = 20261204
EXPOSURES = 2000
INVALID = EXPOSURES // 50
NUM_SHARDS = 16
HOT_VISITORS = 2
BURST = 700
EXPERIMENTS = {
    241398: (912345, 912346),
    241402: (912361, 912362, 912363),
    300017: (0, 1),
}
START_MS = 1_796_402_460_000
# Requests above this many bytes are refused with 413: about a third of the full
# batches of 50 are split.
HTTP_MAX_BYTES = 13_000


def invalid_exposures(rng: random.Random) -> list[str]:
    """About 2 % of the input: each line is refused when parsed or mapped."""
    valid = {
        "visitor_code": "soak-invalid-visitor",
        "experiment_id": 241398,
        "variation_id": 912345,
        "timestamp": START_MS,
    }
    lines = []
    for index in range(INVALID):
        kind = index % 8
        fields = dict(valid, visitor_code=f"soak-invalid-{index:03d}")
        if kind == 0:
            lines.append(json.dumps(fields)[: rng.randint(1, 40)])
            continue
        if kind == 1:
            fields["timestamp"] = START_MS // 1000
        elif kind == 2:
            fields["visitor_code"] = rng.choice(["null", "Anonymous", "-1"])
        elif kind == 3:
            fields["amplitude_device_id"] = "abcd"
        elif kind == 4:
            fields["cross_device_id"] = rng.choice([0, "none", "u-1"])
        elif kind == 5:
            fields["experiment_id"] = rng.choice(["12a", 0, 1.5, True])
        elif kind == 6:
            fields["timestamp"] = "2026-12-04T16:41:00"
        else:
            fields["variation_id"] = -1
        lines.append(json.dumps(fields))
    return lines


class _Visitors:
    """Makes visitors: a visitor code, and some cross-device and Amplitude ids."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self._count = 0

    def make(self, shard: int | None = None) -> dict:
        """A new visitor, whose device falls in ``shard`` when one is given."""
        while True:
            fields = self._next()
            device_id = fields.get("amplitude_device_id", fields["visitor_code"])
            if shard is None or shard_of(device_id, NUM_SHARDS) == shard:
                return fields

    def exposures(self, count: int, shard: int | None = None) -> list[dict]:
        """``count`` exposures of new visitors (1 to 4 each), in random order."""
        exposures: list[dict] = []
        while len(exposures) < count:
            exposures += [self.make(shard)] * self._rng.randint(1, 4)
        exposures = exposures[:count]
        self._rng.shuffle(exposures)
        return exposures

    def _next(self) -> dict:
        rng = self._rng
        self._count += 1
        number = self._count
        fields: dict = {"visitor_code": f"soak-visitor-{number:05d}"}
        draw = rng.random()
        if draw < 0.25:
            fields["cross_device_id"] = rng.choice(
                [f"customer-{number:06d}", 10_000_000 + number]
            )
        elif draw < 0.45:
            fields["amplitude_device_id"] = f"{rng.getrandbits(128):032x}"
        if rng.random() < 0.3:
            fields["amplitude_session_id"] = START_MS - rng.randint(0, 3_600_000)
        return fields


def soak_exposures() -> list[str]:
    """The input lines.

    Each hot visitor has a burst: a stretch of the input whose devices all fall in
    the hot visitor's shard, where every tenth exposure is the hot visitor's. Its
    shard's batches then follow each other closely, each with five of its events,
    so that it goes above 30 events/s. Five is also the most of its events a 429
    can leave waiting: the server counts throttled attempts too, and a larger group
    resent every 0.2 s would keep the device above the limit for good.
    """
    rng = random.Random(SEED)
    visitors = _Visitors(rng)
    hot_shards = rng.sample(range(NUM_SHARDS), HOT_VISITORS)
    parts: list[list] = []
    spread = EXPOSURES - INVALID - HOT_VISITORS * BURST
    for number, shard in enumerate(hot_shards):
        parts.append(visitors.exposures(spread // (HOT_VISITORS + 1)))
        hot = {"visitor_code": f"hot-visitor-{number:02d}"}
        while shard_of(hot["visitor_code"], NUM_SHARDS) != shard:
            hot["visitor_code"] += "x"
        cold = iter(visitors.exposures(BURST, shard))
        parts.append([hot if i % 10 == 0 else next(cold) for i in range(BURST)])
    done = sum(map(len, parts))
    parts.append(visitors.exposures(EXPOSURES - INVALID - done))
    experiments = sorted(EXPERIMENTS)
    lines = []
    for fields in (fields for part in parts for fields in part):
        experiment = rng.choice(experiments)
        variation = rng.choice(EXPERIMENTS[experiment])
        exposure = {
            **fields,
            "experiment_id": experiment,
            "variation_id": variation,
            "timestamp": START_MS + len(lines) * 7,
        }
        if rng.random() < 0.2:
            exposure["experiment_key"] = f"experiment-{experiment}"
            exposure["variation_key"] = f"variation-{variation}"
        lines.append(json.dumps(exposure))
    for line in invalid_exposures(rng):
        lines.insert(rng.randrange(len(lines) + 1), line)
    return lines


def identity(event: dict) -> tuple:
    """The exposure an event stands for: visitor, experiment, variation and time."""
    properties = dict(event["user_properties"]["$set"])
    visitor = properties.pop("KAM_VISITOR_CODE")
    ((experiment, variation),) = properties.items()
    return visitor, experiment, variation, event["time"]


def event_of(payload: str) -> dict | None:
    """The event the job makes of an input line, or None for an invalid line."""
    try:
        exposure = parse_message(RawMessage(payload.encode("utf-8")), "json")
        (event,) = to_amplitude_events(exposure, MappingSettings())
    except InvalidExposure:
        return None
    return event


def test_fault_soak_loses_nothing_and_duplicates_nothing(tmp_path):
    lines = soak_exposures()
    events = [event for event in map(event_of, lines) if event is not None]
    # Exposure -> its insert_id; every valid line is a distinct exposure.
    expected = {identity(event): event["insert_id"] for event in events}
    valid_ids = set(expected.values())
    invalid = len(lines) - len(events)
    assert len(lines) == EXPOSURES
    assert len(expected) == len(valid_ids) == len(events) == EXPOSURES - INVALID
    exposures = tmp_path / "exposures.jsonl"
    exposures.write_text("\n".join(lines) + "\n")
    dead = tmp_path / "dead"
    faults = FaultConfig(
        server_error_rate=0.2,
        error_after_ingest_rate=0.05,
        drop_rate=0.05,
        seed=SEED,
    )
    server = AmplitudeServer(
        api_keys=(API_KEY,),
        faults=faults,
        http_eps_per_device=30,
        http_max_bytes=HTTP_MAX_BYTES,
    )
    with server:
        started = time.monotonic()
        result = run_job(
            "--input_path",
            str(exposures),
            "--amplitude_api_key",
            API_KEY,
            "--amplitude_endpoint",
            server.url,
            "--batch_size",
            "50",
            "--num_shards",
            str(NUM_SHARDS),
            "--throttle_pause_secs",
            "0.2",
            "--max_retry_secs",
            "60",
            "--dead_letter_path",
            str(dead),
            timeout=JOB_TIMEOUT_SECS,
        )
        elapsed = time.monotonic() - started
        accepted = server.accepted_events()
        stats = server.stats()
    assert result.returncode == 0, result.stderr[-5000:]

    records = read_dead_letters(dead)
    delivery = [record for record in records if record["stage"] == "deliver"]
    refused = [record for record in records if record["stage"] in ("parse", "map")]
    accepted_ids = [event["insert_id"] for event in accepted]
    dead_ids = {event_of(record["payload"])["insert_id"] for record in delivery}
    lost = valid_ids - set(accepted_ids) - dead_ids
    by_status = stats["by_status"]
    server_errors = sum(by_status.get(str(s), 0) for s in (500, 502, 503, 504))
    print(
        f"\nfault soak: {len(lines)} exposures ({invalid} invalid) in {elapsed:.1f} s; "
        f"accepted {len(accepted)}, re-posts absorbed {stats['duplicates_absorbed']}, "
        f"dead-lettered {len(records)} ({len(delivery)} at delivery), "
        f"lost {len(lost)}; {stats['requests']} requests, "
        f"{stats['dropped_connections']} dropped, by status "
        f"{json.dumps(by_status, sort_keys=True)}"
    )

    assert lost == set()
    # No event is over the byte limit alone, so nothing may fail at delivery.
    assert [record["reason"] for record in delivery] == []
    assert len(accepted_ids) == len(valid_ids)
    assert set(accepted_ids) == valid_ids
    # Each exposure reached Amplitude once, under the insert_id it maps to.
    reached = [identity(event) for event in accepted]
    assert len(set(reached)) == len(reached)
    assert all(expected.get(identity(e)) == e["insert_id"] for e in accepted)
    assert len(refused) == invalid
    assert all(record["reason"].strip() for record in records)
    assert API_KEY not in result.stdout + result.stderr
    assert all(API_KEY not in json.dumps(record) for record in records)
    # The faults really happened.
    assert server_errors > 0
    assert stats["dropped_connections"] > 0
    assert by_status.get("413", 0) > 0
    assert by_status.get("429", 0) > 0
    assert stats["duplicates_absorbed"] > 0

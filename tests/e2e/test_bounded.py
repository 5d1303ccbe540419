"""End-to-end runs of ``python -m pipeline`` on files, over real HTTP, locally.

Each test runs the job as a user would, in a subprocess on the FnApiRunner, against the
local Amplitude-compatible server, and checks what Amplitude accepted and what reached
the dead letters.
"""

from __future__ import annotations

import base64
import gzip
import json

import fastavro
import pytest

from devtools.amplitude_server import AmplitudeServer, FaultConfig
from tests.e2e.jobs import ROOT, read_dead_letters, run_job
from transforms.exposure import load_schema

pytestmark = pytest.mark.e2e

SAMPLE = ROOT / "samples" / "exposures.jsonl"
API_KEY = "test-api-key"


def sample_lines() -> list[str]:
    return [line for line in SAMPLE.read_text().splitlines() if line.strip()]


def valid_sample_count() -> int:
    from transforms.events import MappingSettings, to_amplitude_events
    from transforms.exposure import InvalidExposure, RawMessage, parse_message

    count = 0
    for line in sample_lines():
        try:
            exposure = parse_message(RawMessage(line.encode()), "json")
            to_amplitude_events(exposure, MappingSettings())
        except InvalidExposure:
            continue
        count += 1
    return count


@pytest.fixture
def server():
    with AmplitudeServer(api_keys=(API_KEY,)) as running:
        yield running


def test_sample_without_key_previews_request_bodies(tmp_path):
    dead = tmp_path / "dead"
    result = run_job("--input_path", str(SAMPLE), "--dead_letter_path", str(dead))
    assert result.returncode == 0, result.stderr
    bodies = [json.loads(line) for line in result.stdout.splitlines() if line]
    events = [event for body in bodies for event in body["events"]]
    assert {body["api_key"] for body in bodies} == {"***"}
    assert len(events) == valid_sample_count() == len(sample_lines()) - 4
    assert all(event["event_type"] == "$identify" for event in events)
    reasons = sorted(record["reason"] for record in read_dead_letters(dead))
    assert len(reasons) == 4
    assert any("looks like epoch seconds" in reason for reason in reasons)
    assert any("malformed JSON" in reason for reason in reasons)
    assert any("user_id (from cross_device_id)" in reason for reason in reasons)
    assert any("has 4 characters; Amplitude requires at least 5" in r for r in reasons)


def test_sample_is_accepted_exactly_once(server, tmp_path):
    dead = tmp_path / "dead"
    result = run_job(
        "--input_path",
        str(SAMPLE),
        "--amplitude_api_key",
        API_KEY,
        "--amplitude_endpoint",
        server.url,
        "--dead_letter_path",
        str(dead),
    )
    assert result.returncode == 0, result.stderr
    accepted = server.accepted_events()
    assert len(accepted) == valid_sample_count()
    assert len({event["insert_id"] for event in accepted}) == len(accepted)
    assert {record["stage"] for record in read_dead_letters(dead)} == {"parse", "map"}
    assert len(read_dead_letters(dead)) == 4


def test_faults_lose_nothing_and_duplicate_nothing(tmp_path):
    exposures = tmp_path / "many.jsonl"
    lines = [
        json.dumps(
            {
                "visitor_code": f"visitor-{i % 97:05d}",
                "experiment_id": 1000 + i % 3,
                "variation_id": i % 2,
                "timestamp": 1_796_402_460_000 + i,
            }
        )
        for i in range(600)
    ]
    exposures.write_text("\n".join(lines) + "\n")
    faults = FaultConfig(
        server_error_rate=0.2, error_after_ingest_rate=0.1, drop_rate=0.1, seed=7
    )
    dead = tmp_path / "dead"
    with AmplitudeServer(api_keys=(API_KEY,), faults=faults) as server:
        result = run_job(
            "--input_path",
            str(exposures),
            "--amplitude_api_key",
            API_KEY,
            "--amplitude_endpoint",
            server.url,
            "--batch_size",
            "25",
            "--dead_letter_path",
            str(dead),
        )
        assert result.returncode == 0, result.stderr
        accepted = server.accepted_events()
        stats = server.stats()
    assert len(accepted) == 600
    assert len({event["insert_id"] for event in accepted}) == 600
    assert read_dead_letters(dead) == []
    # The faults really happened: something was retried and re-posts were absorbed.
    assert stats["requests"] > 600 // 25
    assert stats["duplicates_absorbed"] > 0


def test_rejected_key_dead_letters_and_replays_once_fixed(server, tmp_path):
    wrong_key = "wrong-key-0123456789abcdef"
    dead = tmp_path / "dead"
    result = run_job(
        "--input_path",
        str(SAMPLE),
        "--amplitude_api_key",
        wrong_key,
        "--amplitude_endpoint",
        server.url,
        "--dead_letter_path",
        str(dead),
    )
    assert result.returncode == 0, result.stderr
    records = read_dead_letters(dead)
    delivery = [record for record in records if record["stage"] == "deliver"]
    assert len(delivery) == valid_sample_count()
    assert {record["status"] for record in delivery} == {400}
    assert server.accepted_count() == 0
    everything = result.stdout + result.stderr
    for path in tmp_path.glob("dead*"):
        everything += path.read_text()
    assert wrong_key not in everything

    replayed = run_job(
        "--input_path",
        str(dead) + "*",
        "--input_format",
        "dead_letter",
        "--amplitude_api_key",
        API_KEY,
        "--amplitude_endpoint",
        server.url,
        "--dead_letter_path",
        str(tmp_path / "again"),
    )
    assert replayed.returncode == 0, replayed.stderr
    assert server.accepted_count() == valid_sample_count()
    # The four messages that are wrong in themselves stay dead letters.
    assert len(read_dead_letters(tmp_path / "again")) == 4


def test_avro_gzip_and_corrupt_files_are_read_as_bytes(server, tmp_path):
    schema = load_schema()
    records = [
        {
            "visitor_code": f"avro-visitor-{i}",
            "experiment_id": 77,
            "variation_id": i % 2,
            "timestamp": 1_796_402_460_000 + i,
            "cross_device_id": None,
            "amplitude_device_id": None,
            "amplitude_session_id": None,
            "experiment_key": None,
            "variation_key": None,
        }
        for i in range(5)
    ]
    with open(tmp_path / "good.avro", "wb") as handle:
        fastavro.writer(handle, schema, records)
    (tmp_path / "bad.avro").write_bytes(b"Obj\x01 this is no avro container")
    lines = [
        json.dumps(
            {
                "visitor_code": f"gz-visitor-{i}",
                "experiment_id": 78,
                "variation_id": 1,
                "timestamp": 1_796_402_460_000 + i,
            }
        )
        for i in range(3)
    ]
    with gzip.open(tmp_path / "lines.jsonl.gz", "wt") as handle:
        handle.write("\n\n".join(lines) + "\n")
    (tmp_path / "latin1.jsonl").write_bytes(b'{"visitor_code": "caf\xe9-visitor"}\n')
    dead = tmp_path / "out" / "dead"
    result = run_job(
        "--input_path",
        str(tmp_path / "*.*"),
        "--amplitude_api_key",
        API_KEY,
        "--amplitude_endpoint",
        server.url,
        "--dead_letter_path",
        str(dead),
    )
    assert result.returncode == 0, result.stderr
    visitors = sorted(
        e["user_properties"]["$set"]["KAM_VISITOR_CODE"]
        for e in server.accepted_events()
    )
    assert visitors == sorted(
        [f"avro-visitor-{i}" for i in range(5)] + [f"gz-visitor-{i}" for i in range(3)]
    )
    by_stage = {}
    for record in read_dead_letters(dead):
        by_stage.setdefault(record["stage"], []).append(record)
    assert by_stage["read"][0]["payload_encoding"] == "path"
    assert by_stage["read"][0]["payload"].endswith("bad.avro")
    (latin1,) = by_stage["parse"]
    assert latin1["payload_encoding"] == "base64"
    assert base64.b64decode(latin1["payload"]) == b'{"visitor_code": "caf\xe9-visitor"}'
    assert "not valid UTF-8" in latin1["reason"]


def test_help_lists_every_job_option():
    result = run_job("--help")
    assert result.returncode == 0
    from pipeline.main import help_parser

    flags = [
        action.option_strings[0]
        for action in help_parser()._actions
        if action.option_strings and action.option_strings[0] != "-h"
    ]
    assert len(flags) >= 25
    for flag in flags:
        assert flag in result.stdout


def test_bad_options_fail_fast_with_a_clear_message(tmp_path):
    result = run_job("--input_path", str(tmp_path / "nothing-*.jsonl"))
    assert result.returncode == 2
    assert "no file matches --input_path" in result.stderr


def test_an_avro_schema_without_the_exposure_fields_is_refused(tmp_path):
    schema = tmp_path / "click.avsc"
    schema.write_text(
        json.dumps(
            {
                "type": "record",
                "name": "Click",
                "fields": [
                    {"name": "visitor_code", "type": "string"},
                    {"name": "page", "type": "string"},
                ],
            }
        )
    )
    result = run_job("--input_path", str(SAMPLE), "--avro_schema", str(schema))
    assert result.returncode == 2
    assert (
        "lacks the exposure field(s) experiment_id, variation_id, timestamp"
        in result.stderr
    )

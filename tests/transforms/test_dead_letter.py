"""Tests of dead letters: the record, its JSON line and Pub/Sub forms, reading back."""

from __future__ import annotations

import base64
import datetime
import json
import re

import pytest

from transforms.dead_letter import (
    MAX_REASON_BYTES,
    DeadLetter,
    InvalidDeadLetterRecord,
    clean_reason,
    format_time,
    make_dead_letter,
    message_from_record_line,
    render_payload,
    to_json_line,
    to_pubsub_parts,
    to_record,
    without_dead_letter_attributes,
)
from transforms.exposure import RawMessage

NOW = datetime.datetime(2026, 12, 4, 16, 41, 0, 123456, tzinfo=datetime.timezone.utc)
FAILED_AT = "2026-12-04T16:41:00.123Z"
FAILED_AT_PATTERN = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
JSON_PAYLOAD = b'{"visitor_code": "v\xc3\xa9ronique", "experiment_id": 1}'
BINARY_PAYLOAD = b"\x00\x8a\xff\xfe binary"
ATTRIBUTES = {"origin": "kameleoon", "googclient_schemaencoding": "BINARY"}


def dead_letter(message: RawMessage, stage: str = "parse", **kwargs) -> DeadLetter:
    kwargs.setdefault("now", NOW)
    return make_dead_letter(message, stage, kwargs.pop("reason", "bad"), **kwargs)


# --- the record -------------------------------------------------------------------


def test_record_of_a_utf8_payload() -> None:
    record = to_record(dead_letter(RawMessage(JSON_PAYLOAD), reason="missing x"))
    assert record == {
        "payload": '{"visitor_code": "véronique", "experiment_id": 1}',
        "payload_encoding": "utf-8",
        "stage": "parse",
        "reason": "missing x",
        "status": None,
        "failed_at": FAILED_AT,
    }
    assert list(record) == [
        "payload",
        "payload_encoding",
        "stage",
        "reason",
        "status",
        "failed_at",
    ]


def test_record_with_attributes_and_status() -> None:
    letter = dead_letter(
        RawMessage(BINARY_PAYLOAD, ATTRIBUTES),
        "deliver",
        reason="HTTP 400: invalid event",
        status=400,
    )
    record = to_record(letter)
    assert record == {
        "payload": base64.b64encode(BINARY_PAYLOAD).decode("ascii"),
        "payload_encoding": "base64",
        "attributes": ATTRIBUTES,
        "stage": "deliver",
        "reason": "HTTP 400: invalid event",
        "status": 400,
        "failed_at": FAILED_AT,
    }
    assert list(record) == [
        "payload",
        "payload_encoding",
        "attributes",
        "stage",
        "reason",
        "status",
        "failed_at",
    ]
    assert record["payload"] == "AIr//iBiaW5hcnk="


@pytest.mark.parametrize("attributes", [None, {}])
def test_record_has_no_attributes_when_the_message_had_none(attributes) -> None:
    assert "attributes" not in to_record(dead_letter(RawMessage(b"x", attributes)))


def test_record_of_an_avro_file_record_is_json() -> None:
    message = RawMessage(JSON_PAYLOAD, None, "json")
    record = to_record(dead_letter(message, "map"))
    assert record["payload"] == {"visitor_code": "véronique", "experiment_id": 1}
    assert record["payload_encoding"] == "json"


def test_record_of_an_unreadable_file_is_its_path() -> None:
    message = RawMessage(b"gs://bucket/in/part-0001.avro", None, "path")
    record = to_record(dead_letter(message, "read", reason="corrupt container"))
    assert record == {
        "payload": "gs://bucket/in/part-0001.avro",
        "payload_encoding": "path",
        "stage": "read",
        "reason": "corrupt container",
        "status": None,
        "failed_at": FAILED_AT,
    }


@pytest.mark.parametrize(
    "payload, expected",
    [
        (b"", ("", "utf-8")),
        (b"plain text\n", ("plain text\n", "utf-8")),
        ("日本語".encode(), ("日本語", "utf-8")),
        (b"\xff", ("/w==", "base64")),
        (b"ab\xed\xa0\x80", ("YWLtoIA=", "base64")),  # An encoded surrogate.
        (b"\xe2\x82", ("4oI=", "base64")),  # A cut multi-byte character.
    ],
)
def test_render_payload(payload: bytes, expected: tuple) -> None:
    assert render_payload(RawMessage(payload)) == expected


@pytest.mark.parametrize("stage", ["read", "parse", "map", "deliver"])
def test_stages(stage: str) -> None:
    assert to_record(dead_letter(RawMessage(b"x"), stage))["stage"] == stage


def test_unknown_stage_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown dead-letter stage 'send'"):
        dead_letter(RawMessage(b"x"), "send")


# --- reason -----------------------------------------------------------------------


def test_short_reason_is_kept() -> None:
    assert clean_reason("missing required field visitor_code") == (
        "missing required field visitor_code"
    )
    assert clean_reason("a" * 1000) == "a" * 1000


@pytest.mark.parametrize(
    "reason, expected",
    [
        ("a" * 1001, "a" * 1000),
        ("é" * 600, "é" * 500),  # 2 bytes each: 1,000 bytes exactly.
        ("a" + "é" * 600, "a" + "é" * 499),  # 999 bytes: no half character.
        ("€" * 400, "€" * 333),  # 3 bytes each: 999 bytes.
        ("ab" + "€" * 400, "ab" + "€" * 332),  # 998 bytes.
        ("😀" * 300, "😀" * 250),  # 4 bytes each: 1,000 bytes.
        ("abc" + "😀" * 300, "abc" + "😀" * 249),  # 999 bytes.
    ],
)
def test_long_reason_is_cut_at_a_character_boundary(reason: str, expected: str) -> None:
    cut = clean_reason(reason)
    assert cut == expected
    assert len(cut.encode("utf-8")) <= MAX_REASON_BYTES
    assert reason.startswith(cut)


def test_reason_with_a_lone_surrogate_is_writable() -> None:
    assert clean_reason("bad \udcff byte") == "bad ? byte"


def test_secrets_are_masked() -> None:
    key = "0123456789abcdef0123456789abcdef"
    letter = dead_letter(
        RawMessage(b"x"),
        "deliver",
        reason=f"HTTP 401: invalid api_key {key} (key {key})",
        status=401,
        secrets=[key, ""],
    )
    assert letter.reason == "HTTP 401: invalid api_key *** (key ***)"
    assert key not in to_json_line(letter)
    assert key not in str(to_pubsub_parts(letter))


def test_secret_is_masked_before_the_reason_is_cut() -> None:
    key = "0123456789abcdef0123456789abcdef"
    reason = "x" * 990 + key
    assert clean_reason(reason, [key]) == "x" * 990 + "***"
    assert clean_reason("x" * 995 + key, [key]) == "x" * 995 + "***"


def test_empty_secret_masks_nothing() -> None:
    assert clean_reason("status 500", [""]) == "status 500"


# --- failed_at --------------------------------------------------------------------


def test_failed_at_format() -> None:
    assert FAILED_AT_PATTERN.match(
        make_dead_letter(RawMessage(b"x"), "read", "r").failed_at
    )
    assert dead_letter(RawMessage(b"x")).failed_at == FAILED_AT


def test_failed_at_is_utc() -> None:
    paris = datetime.timezone(datetime.timedelta(hours=1))
    moment = datetime.datetime(2026, 12, 4, 17, 41, 0, 5000, tzinfo=paris)
    assert format_time(moment) == "2026-12-04T16:41:00.005Z"
    assert format_time(datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)) == (
        "2026-01-02T03:04:05.000Z"
    )
    # Milliseconds are truncated, never rounded up into the next second.
    assert format_time(NOW.replace(microsecond=999999)) == "2026-12-04T16:41:00.999Z"


# --- JSON line --------------------------------------------------------------------


def test_json_line_is_one_line_of_the_record() -> None:
    message = RawMessage(b'{"a": 1}\n{"b":\r\n 2}\u2028', ATTRIBUTES)
    letter = dead_letter(message, reason="line one\nline two")
    line = to_json_line(letter)
    assert "\n" not in line and "\r" not in line
    assert json.loads(line) == to_record(letter)


def test_json_line_keeps_non_ascii_text() -> None:
    line = to_json_line(dead_letter(RawMessage(JSON_PAYLOAD), reason="é"))
    assert "véronique" in line and '"reason": "é"' in line


def test_json_line_field_order() -> None:
    line = to_json_line(dead_letter(RawMessage(b"x", {"k": "v"}), reason="r"))
    assert line == (
        '{"payload": "x", "payload_encoding": "utf-8", "attributes": {"k": "v"}, '
        f'"stage": "parse", "reason": "r", "status": null, "failed_at": "{FAILED_AT}"}}'
    )


# --- Pub/Sub ----------------------------------------------------------------------


def test_pubsub_parts_keep_the_original_bytes_and_attributes() -> None:
    letter = dead_letter(RawMessage(BINARY_PAYLOAD, ATTRIBUTES), reason="junk")
    assert to_pubsub_parts(letter) == (
        BINARY_PAYLOAD,
        {
            **ATTRIBUTES,
            "stage": "parse",
            "reason": "junk",
            "status": "",
            "failed_at": FAILED_AT,
        },
    )


def test_pubsub_parts_override_attributes_of_the_same_name() -> None:
    attributes = {"stage": "read", "reason": "old", "status": "500", "keep": "me"}
    letter = dead_letter(
        RawMessage(b"data", attributes), "deliver", reason="HTTP 429", status=429
    )
    data, result = to_pubsub_parts(letter)
    assert data == b"data"
    assert result == {
        "stage": "deliver",
        "reason": "HTTP 429",
        "status": "429",
        "keep": "me",
        "failed_at": FAILED_AT,
    }
    assert attributes == {
        "stage": "read",
        "reason": "old",
        "status": "500",
        "keep": "me",
    }


def test_pubsub_parts_without_attributes() -> None:
    letter = dead_letter(RawMessage(b"data"), status=None)
    assert to_pubsub_parts(letter)[1] == {
        "stage": "parse",
        "reason": "bad",
        "status": "",
        "failed_at": FAILED_AT,
    }


def test_pubsub_reason_fits_an_attribute() -> None:
    letter = dead_letter(RawMessage(b"data"), reason="€" * 2000)
    assert len(to_pubsub_parts(letter)[1]["reason"].encode("utf-8")) <= 1024


# --- reading back -----------------------------------------------------------------


@pytest.mark.parametrize(
    "message",
    [
        RawMessage(JSON_PAYLOAD),
        RawMessage(JSON_PAYLOAD, ATTRIBUTES),
        RawMessage(b""),
        RawMessage(b"line\nbreak \x7f"),
        RawMessage(BINARY_PAYLOAD),
        RawMessage(BINARY_PAYLOAD, ATTRIBUTES),
        RawMessage(bytes(range(256)), {"a": "1"}),
        RawMessage(
            json.dumps({"visitor_code": "vé", "n": 1}, ensure_ascii=False).encode(),
            None,
            "json",
        ),
        # The form the Avro file reader gives a record (read.py).
        RawMessage(
            json.dumps({"x": [1, None, "é"]}, ensure_ascii=False).encode(),
            {"a": "b"},
            "json",
        ),
        RawMessage(b"gs://bucket/dir/file-\xc3\xa9.avro", None, "path"),
    ],
)
def test_round_trip_gives_the_original_message(message: RawMessage) -> None:
    line = to_json_line(dead_letter(message, reason="because"))
    assert message_from_record_line(line.encode("utf-8")) == message


def test_round_trip_of_each_encoding_name() -> None:
    cases = {
        "utf-8": RawMessage(JSON_PAYLOAD),
        "base64": RawMessage(BINARY_PAYLOAD),
        "json": RawMessage(b'{"visitor_code": "abcdef"}', None, "json"),
        "path": RawMessage(b"/data/in.avro", None, "path"),
    }
    for encoding, message in cases.items():
        line = to_json_line(dead_letter(message))
        assert json.loads(line)["payload_encoding"] == encoding
        assert message_from_record_line(line.encode()) == message


def test_dead_letter_attributes_are_dropped_on_read_back() -> None:
    attributes = {
        "stage": "deliver",
        "reason": "HTTP 500",
        "status": "500",
        "failed_at": FAILED_AT,
        "origin": "kameleoon",
    }
    line = to_json_line(dead_letter(RawMessage(b"x", attributes)))
    assert message_from_record_line(line.encode()) == RawMessage(
        b"x", {"origin": "kameleoon"}
    )
    only_ours = {k: v for k, v in attributes.items() if k != "origin"}
    line = to_json_line(dead_letter(RawMessage(b"x", only_ours)))
    assert message_from_record_line(line.encode()) == RawMessage(b"x")


def test_without_dead_letter_attributes() -> None:
    assert without_dead_letter_attributes(None) is None
    assert without_dead_letter_attributes({}) is None
    assert without_dead_letter_attributes({"stage": "map"}) is None
    assert without_dead_letter_attributes({"stage": "map", "a": "b"}) == {"a": "b"}


def test_record_without_encoding_is_utf8() -> None:
    assert message_from_record_line(b'{"payload": "abc"}') == RawMessage(b"abc")


@pytest.mark.parametrize(
    "line, expected",
    [
        (b"not json", "not a dead-letter record: Expecting value"),
        (b"\xff\xfe", "not a dead-letter record: 'utf-8' codec can't decode"),
        (b"[1, 2]", "not a dead-letter record: no payload field"),
        (b'{"reason": "x"}', "not a dead-letter record: no payload field"),
        (
            b'{"payload": "x", "attributes": ["a"]}',
            "not a dead-letter record: attributes not an object",
        ),
        (
            b'{"payload": 5, "payload_encoding": "utf-8"}',
            "not a dead-letter record: utf-8 payload is not a string",
        ),
        (
            b'{"payload": "***", "payload_encoding": "base64"}',
            "payload is not valid base64",
        ),
        (
            b'{"payload": "x", "payload_encoding": "rot13"}',
            "unknown payload_encoding 'rot13'",
        ),
        (b"[" * 100_000, "not a dead-letter record: maximum recursion depth"),
    ],
)
def test_lines_that_are_not_records(line: bytes, expected: str) -> None:
    with pytest.raises(InvalidDeadLetterRecord) as caught:
        message_from_record_line(line)
    assert str(caught.value).startswith(expected)

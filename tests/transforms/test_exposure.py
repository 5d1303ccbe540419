"""Tests of exposure parsing: JSON and Avro messages, field rules and their reasons."""

from __future__ import annotations

import datetime
import io
import json

import fastavro
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from transforms.exposure import (
    MAX_MESSAGE_BYTES,
    SCHEMA_PATH,
    Exposure,
    InvalidExposure,
    RawMessage,
    exposure_from_fields,
    load_schema,
    parse_message,
)

SCHEMA = load_schema()
UTC = datetime.timezone.utc
TIME_MS = 1796402461631

MINIMAL = {
    "visitor_code": "yhygc98acgltdjz9",
    "experiment_id": 241398,
    "variation_id": 912345,
    "timestamp": TIME_MS,
}
FULL = {
    "visitor_code": "mcrecdfteajw8r33",
    "experiment_id": "241402",
    "variation_id": 912361,
    "timestamp": "2026-12-04T16:42:00.302+00:00",
    "cross_device_id": "customer-7869795",
    "amplitude_device_id": "e1557a71-007d-4b43-a590-8d4ab3d2c82a",
    "amplitude_session_id": 1796402126005,
    "experiment_key": "pricing-page-layout",
    "variation_key": "detailed",
}
OPTIONAL_STRINGS = ("amplitude_device_id", "experiment_key", "variation_key")
OPTIONAL_FIELDS = ("cross_device_id", "amplitude_session_id", *OPTIONAL_STRINGS)
REQUIRED_FIELDS = ("visitor_code", "experiment_id", "variation_id", "timestamp")


def ms(*args: int, tz: datetime.tzinfo = UTC) -> int:
    """Epoch milliseconds of a wall time (year, month, day, hour, minute, second)."""
    moment = datetime.datetime(*args, tzinfo=tz)
    return int(moment.timestamp()) * 1000


def message(**overrides: object) -> bytes:
    fields = {**MINIMAL, **overrides}
    return json.dumps(fields, ensure_ascii=False).encode("utf-8")


def without(name: str) -> bytes:
    fields = {k: v for k, v in MINIMAL.items() if k != name}
    return json.dumps(fields).encode("utf-8")


def parse(data: bytes, input_format: str = "json", **kwargs: object) -> Exposure:
    attributes = kwargs.pop("attributes", None)
    return parse_message(RawMessage(data, attributes), input_format, **kwargs)


def reason(data: bytes, input_format: str = "json", **kwargs: object) -> str:
    with pytest.raises(InvalidExposure) as caught:
        parse(data, input_format, **kwargs)
    assert str(caught.value) == caught.value.reason
    return caught.value.reason


def avro_datum(record: dict, schema: dict = SCHEMA) -> bytes:
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, schema, record)
    return buffer.getvalue()


AVRO_RECORD = {
    "visitor_code": "mcrecdfteajw8r33",
    "experiment_id": 241402,
    "variation_id": 912361,
    "timestamp": 1796402520302,
    "cross_device_id": "customer-7869795",
    "amplitude_device_id": "e1557a71-007d-4b43-a590-8d4ab3d2c82a",
    "amplitude_session_id": 1796402126005,
    "experiment_key": "pricing-page-layout",
    "variation_key": "detailed",
}
AVRO_EXPOSURE = Exposure(
    visitor_code="mcrecdfteajw8r33",
    experiment_id=241402,
    variation_id=912361,
    time_ms=1796402520302,
    cross_device_id="customer-7869795",
    amplitude_device_id="e1557a71-007d-4b43-a590-8d4ab3d2c82a",
    amplitude_session_id=1796402126005,
    experiment_key="pricing-page-layout",
    variation_key="detailed",
)


# --- valid messages ---------------------------------------------------------------


def test_minimal_json_message() -> None:
    assert parse(message()) == Exposure(
        visitor_code="yhygc98acgltdjz9",
        experiment_id=241398,
        variation_id=912345,
        time_ms=TIME_MS,
    )


def test_full_json_message() -> None:
    data = json.dumps(FULL).encode()
    assert parse(data) == Exposure(
        visitor_code="mcrecdfteajw8r33",
        experiment_id=241402,
        variation_id=912361,
        time_ms=ms(2026, 12, 4, 16, 42, 0) + 302,
        cross_device_id="customer-7869795",
        amplitude_device_id="e1557a71-007d-4b43-a590-8d4ab3d2c82a",
        amplitude_session_id=1796402126005,
        experiment_key="pricing-page-layout",
        variation_key="detailed",
    )


def test_utf8_bom_is_skipped() -> None:
    assert parse(b"\xef\xbb\xbf" + message()).visitor_code == "yhygc98acgltdjz9"


def test_unknown_fields_are_ignored() -> None:
    data = message(country="FR", nested={"a": [1, 2]}, experiment="other")
    assert parse(data) == parse(message())


def test_exposure_from_fields_takes_a_mapping() -> None:
    assert exposure_from_fields(MINIMAL) == parse(message())


def test_unknown_input_format_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="unknown input format 'xml'"):
        parse(message(), "xml")


# --- message-level rejections -----------------------------------------------------


@pytest.mark.parametrize(
    "data, expected",
    [
        (b'{"visitor_code": }', "malformed JSON: Expecting value at line 1 column 18"),
        (b"{'visitor_code': 'a'}", "malformed JSON: Expecting property name enclosed"),
        (b'{"a": 1} {"b": 2}', "malformed JSON: Extra data at line 1 column 10"),
    ],
)
def test_malformed_json(data: bytes, expected: str) -> None:
    assert reason(data).startswith(expected)


@pytest.mark.parametrize(
    "data",
    [
        b'{"visitor_code": "abcdef", "experiment_id": 1',
        b'{"visitor_code": "abc',
        b"{",
        b'{"visitor_code"',
    ],
)
def test_truncated_json(data: bytes) -> None:
    assert reason(data).startswith("malformed JSON: ")


@pytest.mark.parametrize(
    "data, kind",
    [
        (b"[1, 2]", "array"),
        (b"[]", "array"),
        (b'"visitor"', "string"),
        (b"42", "number"),
        (b"4.5", "number"),
        (b"null", "null"),
        (b"true", "boolean"),
    ],
)
def test_non_object_json(data: bytes, kind: str) -> None:
    assert reason(data) == f"message is a JSON {kind}, not a JSON object"


def test_invalid_utf8() -> None:
    assert reason(b'{"visitor_code": "ab\xffcd"}') == (
        "message is not valid UTF-8: byte 0xff at position 20"
    )


def test_overlong_utf8_encoding_is_invalid() -> None:
    assert reason(b'{"visitor_code": "\xc0\xaf"}').startswith(
        "message is not valid UTF-8: byte 0xc0"
    )


@pytest.mark.parametrize("data", [b"", b" ", b" \t\r\n ", b"\xef\xbb\xbf", b"\n"])
def test_empty_or_blank_message(data: bytes) -> None:
    assert reason(data) == "message is empty"


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_are_not_json(constant: str) -> None:
    data = message().replace(b"241398", constant.encode())
    assert reason(data) == f"malformed JSON: {constant} is not a JSON number"


def test_deeply_nested_json_is_refused_not_a_crash() -> None:
    assert reason(b"[" * 100_000) == "JSON is nested too deeply"


def test_message_over_one_mebibyte_is_rejected() -> None:
    data = message(padding="x" * MAX_MESSAGE_BYTES)
    assert reason(data) == (
        f"message is {len(data):,} bytes; an exposure is at most 1,048,576 bytes"
    )
    assert reason(b"\x00" * (MAX_MESSAGE_BYTES + 1), "avro") == (
        "message is 1,048,577 bytes; an exposure is at most 1,048,576 bytes"
    )


def test_message_of_exactly_one_mebibyte_is_parsed() -> None:
    base = message()
    data = base + b" " * (MAX_MESSAGE_BYTES - len(base))
    assert len(data) == MAX_MESSAGE_BYTES
    assert parse(data) == parse(base)


# --- required fields --------------------------------------------------------------


@pytest.mark.parametrize("name", REQUIRED_FIELDS)
def test_missing_required_field(name: str) -> None:
    assert reason(without(name)) == f"missing required field {name}"


@pytest.mark.parametrize("name", REQUIRED_FIELDS)
def test_null_required_field_is_missing(name: str) -> None:
    assert reason(message(**{name: None})) == f"missing required field {name}"


@pytest.mark.parametrize(
    "value, expected",
    [
        (True, "visitor_code must be a string, got a boolean"),
        (12345678, "visitor_code must be a string, got a number"),
        (1.5, "visitor_code must be a string, got a number"),
        ({"a": 1}, "visitor_code must be a string, got an object"),
        (["abcdef"], "visitor_code must be a string, got an array"),
        ("", "visitor_code is empty"),
    ],
)
def test_visitor_code_type(value: object, expected: str) -> None:
    assert reason(message(visitor_code=value)) == expected


def test_visitor_code_length_bounds() -> None:
    assert parse(message(visitor_code="v" * 255)).visitor_code == "v" * 255
    assert parse(message(visitor_code="é" * 255)).visitor_code == "é" * 255
    assert parse(message(visitor_code="v")).visitor_code == "v"
    assert reason(message(visitor_code="v" * 256)) == (
        "visitor_code has 256 characters; Kameleoon allows at most 255"
    )


def test_visitor_code_with_lone_surrogate_is_rejected() -> None:
    data = message().replace(b"yhygc98acgltdjz9", b"abc\\ud800def")
    assert reason(data) == (
        "visitor_code contains a lone UTF-16 surrogate, which is not valid Unicode text"
    )


@pytest.mark.parametrize("name", ["experiment_id", "variation_id"])
@pytest.mark.parametrize(
    "value, expected",
    [
        (True, "{name} must be an integer, got a boolean"),
        (False, "{name} must be an integer, got a boolean"),
        (1.5, "{name} must be an integer, got the number 1.5"),
        (3.0, "{name} must be an integer, got the number 3.0"),
        ({"id": 1}, "{name} must be an integer, got an object"),
        ([1], "{name} must be an integer, got an array"),
        ("", "{name} must be an integer or a string of ASCII digits, got ''"),
        ("12a", "{name} must be an integer or a string of ASCII digits, got '12a'"),
        ("-3", "{name} must be an integer or a string of ASCII digits, got '-3'"),
        (" 12", "{name} must be an integer or a string of ASCII digits, got ' 12'"),
        ("1e3", "{name} must be an integer or a string of ASCII digits, got '1e3'"),
        ("١٢٣", "{name} must be an integer or a string of ASCII digits, got '١٢٣'"),
        (
            "１２３",
            "{name} must be an integer or a string of ASCII digits, got '１２３'",
        ),
        (2**63, "{name} does not fit in a 64-bit integer"),
        ("9" * 5000, "{name} does not fit in a 64-bit integer"),
        (-(2**63) - 1, "{name} does not fit in a 64-bit integer"),
    ],
)
def test_id_types(name: str, value: object, expected: str) -> None:
    assert reason(message(**{name: value})) == expected.format(name=name)


@pytest.mark.parametrize(
    "fields, expected",
    [
        ({"experiment_id": 0}, "experiment_id must be positive, got 0"),
        ({"experiment_id": "0"}, "experiment_id must be positive, got 0"),
        ({"experiment_id": "000"}, "experiment_id must be positive, got 0"),
        ({"experiment_id": -1}, "experiment_id must be positive, got -1"),
        ({"experiment_id": -241398}, "experiment_id must be positive, got -241398"),
        ({"variation_id": -1}, "variation_id must be zero or more, got -1"),
    ],
)
def test_id_bounds(fields: dict, expected: str) -> None:
    assert reason(message(**fields)) == expected


@pytest.mark.parametrize(
    "fields, experiment_id, variation_id",
    [
        ({"variation_id": 0}, 241398, 0),
        ({"variation_id": "0"}, 241398, 0),
        ({"experiment_id": 1}, 1, 912345),
        ({"experiment_id": "241398", "variation_id": "912345"}, 241398, 912345),
        ({"experiment_id": "000241398"}, 241398, 912345),
        ({"experiment_id": 2**63 - 1}, 2**63 - 1, 912345),
        ({"experiment_id": "0" * 30 + "7"}, 7, 912345),
    ],
)
def test_valid_ids(fields: dict, experiment_id: int, variation_id: int) -> None:
    exposure = parse(message(**fields))
    assert (exposure.experiment_id, exposure.variation_id) == (
        experiment_id,
        variation_id,
    )


# --- timestamp --------------------------------------------------------------------

SECONDS_REASON = (
    "timestamp {} is below 100,000,000,000: it looks like epoch seconds, not "
    "milliseconds (send milliseconds; the unit is never guessed)"
)
MICROS_REASON = (
    "timestamp {} is above 9,999,999,999,999: it looks like epoch micro- or "
    "nanoseconds, not milliseconds (send milliseconds; the unit is never guessed)"
)


@pytest.mark.parametrize("as_string", [False, True])
def test_timestamp_bounds(as_string: bool) -> None:
    def value(number: int) -> object:
        return str(number) if as_string else number

    assert parse(message(timestamp=value(100_000_000_000))).time_ms == 100_000_000_000
    assert parse(message(timestamp=value(9_999_999_999_999))).time_ms == (
        9_999_999_999_999
    )
    assert reason(message(timestamp=value(99_999_999_999))) == SECONDS_REASON.format(
        99999999999
    )
    assert reason(message(timestamp=value(10_000_000_000_000))) == (
        MICROS_REASON.format(10000000000000)
    )


@pytest.mark.parametrize(
    "value, expected",
    [
        (1796402461, SECONDS_REASON.format(1796402461)),
        ("1796402461", SECONDS_REASON.format(1796402461)),
        (0, SECONDS_REASON.format(0)),
        (1796402461631000, MICROS_REASON.format(1796402461631000)),
        (1796402461631000000, MICROS_REASON.format(1796402461631000000)),
        ("1796402461631000000", MICROS_REASON.format(1796402461631000000)),
        (
            -1796402461631,
            "timestamp -1796402461631 is negative; send epoch milliseconds from "
            "100,000,000,000 to 9,999,999,999,999",
        ),
        (2**64, "timestamp does not fit in a 64-bit integer"),
        ("9" * 5000, "timestamp does not fit in a 64-bit integer"),
        (True, "timestamp must be an integer, got a boolean"),
        (
            1796402461631.5,
            "timestamp must be whole epoch milliseconds, got the number "
            "1796402461631.5",
        ),
        (
            1796402461631.0,
            "timestamp must be whole epoch milliseconds, got the number "
            "1796402461631.0",
        ),
        ({"ms": 1}, "timestamp must be an integer, got an object"),
        ([TIME_MS], "timestamp must be an integer, got an array"),
    ],
)
def test_timestamp_rejections(value: object, expected: str) -> None:
    assert reason(message(timestamp=value)) == expected


def test_timestamp_digit_string_with_leading_zeros() -> None:
    assert parse(message(timestamp="000" + str(TIME_MS))).time_ms == TIME_MS


@pytest.mark.parametrize(
    "value, expected",
    [
        ("2026-12-04T16:41:00Z", ms(2026, 12, 4, 16, 41, 0)),
        ("2026-12-04T16:41:00z", ms(2026, 12, 4, 16, 41, 0)),
        ("2026-12-04t16:41:00Z", ms(2026, 12, 4, 16, 41, 0)),
        ("2026-12-04 16:41:00Z", ms(2026, 12, 4, 16, 41, 0)),
        ("2026-12-04T16:41:00.123Z", ms(2026, 12, 4, 16, 41, 0) + 123),
        ("2026-12-04T16:41:00.1Z", ms(2026, 12, 4, 16, 41, 0) + 100),
        ("2026-12-04T16:41:00.12Z", ms(2026, 12, 4, 16, 41, 0) + 120),
        ("2026-12-04T16:41:00+00:00", ms(2026, 12, 4, 16, 41, 0)),
        ("2026-12-04T16:41:00-00:00", ms(2026, 12, 4, 16, 41, 0)),
        ("2026-12-04T18:41:00.5+02:00", ms(2026, 12, 4, 16, 41, 0) + 500),
        ("2026-12-04T11:11:00-05:30", ms(2026, 12, 4, 16, 41, 0)),
        ("2026-12-05T00:11:00+07:30", ms(2026, 12, 4, 16, 41, 0)),
        # Nine fraction digits are truncated to the millisecond, never rounded.
        ("2026-12-04T16:41:00.123456789Z", ms(2026, 12, 4, 16, 41, 0) + 123),
        ("2026-12-04T16:41:00.999999999Z", ms(2026, 12, 4, 16, 41, 0) + 999),
        ("2026-12-04T16:41:00.000999999Z", ms(2026, 12, 4, 16, 41, 0)),
        ("2028-02-29T00:00:00Z", ms(2028, 2, 29, 0, 0, 0)),
    ],
)
def test_rfc3339_timestamps(value: str, expected: int) -> None:
    assert parse(message(timestamp=value)).time_ms == expected


def test_rfc3339_literal_values() -> None:
    # Independent of datetime: 2026-12-04T16:41:00Z is day 20,791 after the epoch.
    assert parse(message(timestamp="2026-12-04T16:41:00.123Z")).time_ms == (
        20791 * 86_400_000 + (16 * 3600 + 41 * 60) * 1000 + 123
    )


NOT_RFC3339 = (
    "timestamp {} is neither epoch milliseconds nor an RFC 3339 time with an offset "
    "(e.g. 2026-12-04T16:41:00.123Z)"
)


@pytest.mark.parametrize(
    "value",
    [
        "2026-12-04T16:41:00",
        "2026-12-04T16:41:00.123",
        "2026-12-04",
        "2026-12-04T16:41Z",
        "2026-12-04T16:41:00+0200",
        "2026-12-04T16:41:00+02",
        "2026-12-04T16:41:00.Z",
        "2026-12-04T16:41:00Z\n",
        " 2026-12-04T16:41:00Z",
        "04/12/2026 16:41:00",
        "٢٠٢٦-١٢-٠٤T16:41:00Z",
        "yesterday",
        "",
        "-1796402461631",
        "١٧٩٦٤٠٢٤٦١٦٣١",
    ],
)
def test_timestamps_that_are_not_rfc3339(value: str) -> None:
    assert reason(message(timestamp=value)) == NOT_RFC3339.format(repr(value))


@pytest.mark.parametrize(
    "value, cause",
    [
        ("2026-02-30T16:41:00Z", "day is out of range for month"),
        ("2027-02-29T16:41:00Z", "day is out of range for month"),
        ("2026-13-01T16:41:00Z", "month must be in 1..12"),
        ("2026-12-04T24:00:00Z", "hour must be in 0..23"),
        ("2026-12-04T16:60:00Z", "minute must be in 0..59"),
        ("2026-12-04T16:41:60Z", "second must be in 0..59"),
    ],
)
def test_invalid_dates(value: str, cause: str) -> None:
    assert reason(message(timestamp=value)) == (
        f"timestamp {value!r} is not a valid time: {cause}"
    )


def test_invalid_offset() -> None:
    assert reason(message(timestamp="2026-12-04T16:41:00+24:00")) == (
        "timestamp has an invalid offset +24:00"
    )


@pytest.mark.parametrize(
    "value",
    ["1971-01-01T00:00:00Z", "1973-03-03T09:46:39.999Z", "2300-01-01T00:00:00Z"],
)
def test_rfc3339_outside_the_range(value: str) -> None:
    assert reason(message(timestamp=value)) == (
        f"timestamp {value!r} is outside the accepted range "
        "1973-03-03T09:46:40.000Z to 2286-11-20T17:46:39.999Z"
    )


def test_rfc3339_range_edges_are_accepted() -> None:
    assert parse(message(timestamp="1973-03-03T09:46:40Z")).time_ms == (100_000_000_000)
    assert parse(message(timestamp="2286-11-20T17:46:39.999999Z")).time_ms == (
        9_999_999_999_999
    )


# --- optional fields --------------------------------------------------------------


@pytest.mark.parametrize("name", OPTIONAL_FIELDS)
@pytest.mark.parametrize("value", [None, ""])
def test_null_or_empty_optional_field_is_absent(name: str, value: object) -> None:
    assert parse(message(**{name: value})) == parse(message())


def test_cross_device_id_int_becomes_its_decimal_string() -> None:
    assert parse(message(cross_device_id=7869795)).cross_device_id == "7869795"
    assert parse(message(cross_device_id=0)).cross_device_id == "0"
    assert parse(message(cross_device_id=-1)).cross_device_id == "-1"
    assert parse(message(cross_device_id="007")).cross_device_id == "007"


@pytest.mark.parametrize(
    "value, kind",
    [
        (True, "a boolean"),
        (1.5, "a number"),
        ({"id": "x"}, "an object"),
        (["customer-1"], "an array"),
    ],
)
def test_cross_device_id_types(value: object, kind: str) -> None:
    assert reason(message(cross_device_id=value)) == (
        f"cross_device_id must be a string or an integer, got {kind}"
    )


@pytest.mark.parametrize("name", OPTIONAL_STRINGS)
@pytest.mark.parametrize(
    "value, kind",
    [
        (True, "a boolean"),
        (12345678, "a number"),
        (1.5, "a number"),
        ({"a": 1}, "an object"),
        (["a"], "an array"),
    ],
)
def test_optional_string_types(name: str, value: object, kind: str) -> None:
    assert reason(message(**{name: value})) == f"{name} must be a string, got {kind}"


@pytest.mark.parametrize("name", ["cross_device_id", *OPTIONAL_STRINGS])
def test_optional_string_with_lone_surrogate(name: str) -> None:
    data = message(**{name: "SURROGATE"}).replace(b"SURROGATE", b"ab\\udfffcd")
    assert reason(data) == (
        f"{name} contains a lone UTF-16 surrogate, which is not valid Unicode text"
    )


def test_optional_strings_are_kept() -> None:
    exposure = parse(
        message(
            amplitude_device_id="device-1",
            experiment_key="pricing-page-layout",
            variation_key="detailed",
        )
    )
    assert (
        exposure.amplitude_device_id,
        exposure.experiment_key,
        exposure.variation_key,
    ) == ("device-1", "pricing-page-layout", "detailed")


@pytest.mark.parametrize(
    "value, expected",
    [
        (1796402126005, 1796402126005),
        ("1796402126005", 1796402126005),
        (-1, -1),
        ("-1", -1),
        (0, 0),
    ],
)
def test_session_id(value: object, expected: int) -> None:
    assert parse(message(amplitude_session_id=value)).amplitude_session_id == expected


@pytest.mark.parametrize(
    "value, expected",
    [
        (-2, "amplitude_session_id must be epoch milliseconds or -1, got -2"),
        (
            -1796402126005,
            "amplitude_session_id must be epoch milliseconds or -1, got -1796402126005",
        ),
        (
            "-2",
            "amplitude_session_id must be an integer or a string of ASCII digits, "
            "got '-2'",
        ),
        (True, "amplitude_session_id must be an integer, got a boolean"),
        (1.5, "amplitude_session_id must be an integer, got the number 1.5"),
        ({"id": 1}, "amplitude_session_id must be an integer, got an object"),
        ([1], "amplitude_session_id must be an integer, got an array"),
        (2**63, "amplitude_session_id does not fit in a 64-bit integer"),
        ("9" * 5000, "amplitude_session_id does not fit in a 64-bit integer"),
    ],
)
def test_session_id_rejections(value: object, expected: str) -> None:
    assert reason(message(amplitude_session_id=value)) == expected


# --- Avro -------------------------------------------------------------------------


def test_avro_datum() -> None:
    assert parse(avro_datum(AVRO_RECORD), "avro") == AVRO_EXPOSURE


def test_avro_datum_with_nulls() -> None:
    record = {**AVRO_RECORD, **dict.fromkeys(OPTIONAL_FIELDS)}
    assert parse(avro_datum(record), "avro") == Exposure(
        visitor_code="mcrecdfteajw8r33",
        experiment_id=241402,
        variation_id=912361,
        time_ms=1796402520302,
    )


def test_avro_datum_applies_the_field_rules() -> None:
    assert reason(avro_datum({**AVRO_RECORD, "experiment_id": 0}), "avro") == (
        "experiment_id must be positive, got 0"
    )
    assert reason(avro_datum({**AVRO_RECORD, "timestamp": 1796402520}), "avro") == (
        SECONDS_REASON.format(1796402520)
    )
    assert reason(avro_datum({**AVRO_RECORD, "amplitude_session_id": -2}), "avro") == (
        "amplitude_session_id must be epoch milliseconds or -1, got -2"
    )


def test_avro_datum_with_trailing_bytes() -> None:
    datum = avro_datum(AVRO_RECORD)
    assert reason(datum + b"\x00", "avro") == (
        "not an Avro datum of the exposure schema: 1 byte left over after the record"
    )
    assert reason(datum + b"junk", "avro") == (
        "not an Avro datum of the exposure schema: 4 bytes left over after the record"
    )


def test_every_truncation_of_an_avro_datum_is_rejected() -> None:
    datum = avro_datum(AVRO_RECORD)
    assert reason(b"", "avro") == "message is empty"
    for end in range(1, len(datum)):
        assert reason(datum[:end], "avro") == (
            "not an Avro datum of the exposure schema: the data ends before the "
            "record is complete"
        ), end


@pytest.mark.parametrize(
    "data",
    [
        b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff",
        b"\x00",
        bytes(range(256)),
        b'{"visitor_code": "abcdef"}',
    ],
)
def test_avro_junk(data: bytes) -> None:
    assert reason(data, "avro").startswith("not an Avro datum of the exposure schema: ")


def test_avro_datum_of_another_schema() -> None:
    other = fastavro.parse_schema(
        {
            "type": "record",
            "name": "Other",
            "fields": [
                {"name": "amount", "type": "double"},
                {"name": "flag", "type": "boolean"},
            ],
        }
    )
    data = avro_datum({"amount": 12.5, "flag": True}, other)
    assert reason(data, "avro").startswith("not an Avro datum of the exposure schema: ")


def test_avro_string_with_invalid_utf8_is_rejected() -> None:
    datum = avro_datum({**AVRO_RECORD, "visitor_code": "abcdef"})
    broken = datum.replace(b"abcdef", b"ab\xffdef")
    assert reason(broken, "avro").startswith(
        "not an Avro datum of the exposure schema: UnicodeDecodeError"
    )


@pytest.mark.parametrize("encoding", ["JSON", "json", "Json"])
def test_schema_encoding_json_attribute_reads_json_under_avro(encoding: str) -> None:
    attributes = {"googclient_schemaencoding": encoding}
    assert parse(message(), "avro", attributes=attributes) == parse(message())
    assert reason(b"[]", "avro", attributes=attributes) == (
        "message is a JSON array, not a JSON object"
    )


def test_schema_encoding_binary_attribute_reads_avro() -> None:
    attributes = {"googclient_schemaencoding": "BINARY", "origin": "kameleoon"}
    data = avro_datum(AVRO_RECORD)
    assert parse(data, "avro", attributes=attributes) == AVRO_EXPOSURE


EXTENDED_SCHEMA = fastavro.parse_schema(
    {
        "type": "record",
        "name": "KameleoonExposure",
        "namespace": "com.kameleoon.amplitude",
        "fields": [
            *json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))["fields"],
            {"name": "country", "type": ["null", "string"], "default": None},
        ],
    }
)


def test_writer_schema_with_an_extra_field_resolves_to_the_shipped_schema() -> None:
    data = avro_datum({**AVRO_RECORD, "country": "FR"}, EXTENDED_SCHEMA)
    exposure = parse(data, "avro", writer_schema=EXTENDED_SCHEMA, reader_schema=SCHEMA)
    assert exposure == AVRO_EXPOSURE
    assert parse(data, "avro", writer_schema=EXTENDED_SCHEMA) == AVRO_EXPOSURE


def test_extended_datum_without_its_writer_schema_is_rejected() -> None:
    data = avro_datum({**AVRO_RECORD, "country": "FR"}, EXTENDED_SCHEMA)
    assert reason(data, "avro") == (
        "not an Avro datum of the exposure schema: 4 bytes left over after the record"
    )


def test_load_schema_reads_a_path(tmp_path) -> None:
    path = tmp_path / "exposure.avsc"
    path.write_text(json.dumps({"type": "record", "name": "R", "fields": []}))
    assert load_schema(path)["name"] == "R"
    assert load_schema()["name"] == "com.kameleoon.amplitude.KameleoonExposure"


# --- dead_letter format -----------------------------------------------------------


def test_dead_letter_format_reads_a_json_object() -> None:
    assert parse(message(), "dead_letter") == parse(message())


def test_dead_letter_format_reads_an_avro_datum() -> None:
    assert parse(avro_datum(AVRO_RECORD), "dead_letter") == AVRO_EXPOSURE


def test_dead_letter_format_json_object_with_a_bad_field_gives_the_field_reason() -> (
    None
):
    assert reason(message(experiment_id=0), "dead_letter") == (
        "experiment_id must be positive, got 0"
    )


def test_dead_letter_format_junk_names_both_formats() -> None:
    assert reason(b"\x00\x01junk", "dead_letter") == (
        "neither a JSON exposure (malformed JSON: Expecting value at line 1 column 1) "
        "nor an Avro exposure (not an Avro datum of the exposure schema: a union "
        "branch index is out of range)"
    )
    text = reason(b"[1, 2]", "dead_letter")
    assert text.startswith(
        "neither a JSON exposure (message is a JSON array, not a JSON object) nor an "
        "Avro exposure (not an Avro datum of the exposure schema: "
    )


# --- properties -------------------------------------------------------------------

JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=8,
)
FIELD_VALUES = st.one_of(
    JSON_VALUES,
    st.integers(min_value=-(10**20), max_value=10**20),
    st.integers(min_value=-(10**20), max_value=10**20).map(str),
    st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat()),
    st.sampled_from(["", "-1", "0", "null", "2026-12-04T16:41:00Z", "１２"]),
)
FIELD_MAPS = st.dictionaries(
    st.sampled_from([*REQUIRED_FIELDS, *OPTIONAL_FIELDS, "other"]),
    FIELD_VALUES,
    max_size=10,
)


def _parses_or_rejects(data: bytes, input_format: str) -> None:
    try:
        result = parse_message(RawMessage(data), input_format)
    except InvalidExposure as error:
        assert error.reason
        assert error.reason.encode("utf-8")
    else:
        assert isinstance(result, Exposure)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=st.binary(max_size=200),
    input_format=st.sampled_from(["json", "avro", "dead_letter"]),
)
def test_any_bytes_parse_or_are_rejected(data: bytes, input_format: str) -> None:
    _parses_or_rejects(data, input_format)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fields=FIELD_MAPS, input_format=st.sampled_from(["json", "dead_letter"]))
def test_any_json_object_parses_or_is_rejected(fields: dict, input_format: str) -> None:
    data = json.dumps(fields, ensure_ascii=False).encode("utf-8", "surrogatepass")
    _parses_or_rejects(data, input_format)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=st.binary(min_size=1, max_size=40),
    cut=st.integers(min_value=0, max_value=200),
)
def test_corrupted_avro_datums_parse_or_are_rejected(data: bytes, cut: int) -> None:
    datum = bytearray(avro_datum(AVRO_RECORD))
    position = cut % len(datum)
    datum[position : position + len(data)] = data
    _parses_or_rejects(bytes(datum), "avro")


@pytest.mark.parametrize("field", ["experiment_key", "variation_key"])
def test_readable_keys_longer_than_amplitude_allows_are_refused(field: str) -> None:
    fields = {
        "visitor_code": "visitor-0001",
        "experiment_id": 1,
        "variation_id": 0,
        "timestamp": 1_796_402_460_000,
    }
    assert exposure_from_fields({**fields, field: "k" * 1024}) is not None
    with pytest.raises(InvalidExposure) as refused:
        exposure_from_fields({**fields, field: "k" * 1025})
    assert refused.value.reason == (
        f"{field} has 1025 characters; Amplitude allows at most 1,024 in a property "
        "value"
    )

"""A corpus of bad (and borderline good) exposure messages, as data.

``BAD`` holds messages the job must refuse: each with the stage that refuses it
(``parse`` or ``map``) and a piece of the reason that names the cause. ``GOOD`` holds
borderline messages the job must accept, each with the exact Amplitude events (default
mapping settings: one ``$identify`` event) it must yield.
"""

from __future__ import annotations

import io
import json
import random
from typing import NamedTuple

import fastavro

from transforms.exposure import MAX_MESSAGE_BYTES, load_schema

__all__ = ["BAD", "GOOD", "BadCase", "GoodCase"]


class BadCase(NamedTuple):
    case_id: str
    input_format: str  # "json" or "avro"
    payload: bytes
    attributes: dict[str, str] | None
    stage: str  # "parse" or "map"
    reason: str  # a substring of the dead letter's reason


class GoodCase(NamedTuple):
    case_id: str
    input_format: str
    payload: bytes
    attributes: dict[str, str] | None
    events: list[dict]


_MISSING = object()
VISITOR = "kam-visitor-42"
EXPERIMENT = 241398
VARIATION = 912345
TIME_MS = 1_796_402_460_000  # 2026-12-04T16:41:00Z
BASE = {
    "visitor_code": VISITOR,
    "experiment_id": EXPERIMENT,
    "variation_id": VARIATION,
    "timestamp": TIME_MS,
}
_SCHEMA = load_schema()
_AVRO_BASE = {
    **BASE,
    "cross_device_id": None,
    "amplitude_device_id": None,
    "amplitude_session_id": None,
    "experiment_key": None,
    "variation_key": None,
}
_JSON_ATTRIBUTE = "googclient_schemaencoding"
_RANGE = "1973-03-03T09:46:40.000Z to 2286-11-20T17:46:39.999Z"


def exposure(**fields: object) -> dict:
    """The base exposure with ``fields`` changed (``_MISSING`` removes a field)."""
    merged = {**BASE, **fields}
    return {k: v for k, v in merged.items() if v is not _MISSING}


def as_json(**fields: object) -> bytes:
    return json.dumps(exposure(**fields), ensure_ascii=False).encode("utf-8")


def with_raw(field: str, raw_json: str) -> bytes:
    """The base exposure as JSON with ``field`` set to a literal piece of JSON text."""
    text = json.dumps(exposure(**{field: 0}))
    return text.replace(f'"{field}": 0', f'"{field}": {raw_json}').encode("utf-8")


def avro_datum(schema: dict | None = None, **fields: object) -> bytes:
    stream = io.BytesIO()
    record = {**_AVRO_BASE, **fields} if schema is None else fields
    fastavro.schemaless_writer(stream, schema or _SCHEMA, record)
    return stream.getvalue()


def zigzag(number: int) -> bytes:
    """Avro's variable-length zig-zag encoding of a long."""
    value = (number << 1) ^ (number >> 63)
    out = bytearray()
    while True:
        low, value = value & 0x7F, value >> 7
        out.append(low | (0x80 if value else 0))
        if not value:
            return bytes(out)


def identify(
    insert_id: str,
    *,
    visitor: str = VISITOR,
    device_id: str | None = None,
    user_id: str | None = None,
    session_id: int | None = None,
    experiment: int = EXPERIMENT,
    variation: int = VARIATION,
    time_ms: int = TIME_MS,
) -> dict:
    """The exact ``$identify`` event the default settings make of an exposure."""
    event: dict = {"event_type": "$identify", "device_id": device_id or visitor}
    if user_id is not None:
        event["user_id"] = user_id
    if session_id is not None:
        event["session_id"] = session_id
    event["time"] = time_ms
    event["user_properties"] = {
        "$set": {
            f"KAM_EXPERIMENT_{experiment}": f"KAM_VARIATION_{variation}",
            "KAM_VISITOR_CODE": visitor,
        }
    }
    event["insert_id"] = insert_id
    return event


def _utf8_reason(payload: bytes, byte: int) -> str:
    """The reason of a message whose first invalid UTF-8 byte is ``byte``."""
    position = payload.index(bytes([byte]))
    return f"message is not valid UTF-8: byte 0x{byte:02x} at position {position}"


# Payloads that need a few steps to build.

_LONE_CONTINUATION = as_json(visitor_code="kam-visitor-\x00").replace(
    b"\\u0000", b"\x80"
)
_OVERLONG_SLASH = as_json(visitor_code="kam/visitor").replace(b"/", b"\xc0\xaf")
_OVERLONG_NUL = as_json(visitor_code="kam-visitor-0").replace(b'-0"', b'-\xc0\x80"')
_CESU_SURROGATE = as_json(visitor_code="kam-visitor-\U0001f600").replace(
    "\U0001f600".encode(), b"\xed\xa0\xbd\xed\xb8\x80"
)
_ABOVE_U10FFFF = as_json(visitor_code="kam-visitor-x").replace(
    b'-x"', b'-\xf4\x90\x80\x80"'
)
_TRUNCATED_SEQUENCE = b'{"visitor_code": "kam-visitor-\xe2\x82'
_LATIN1 = json.dumps(exposure(visitor_code="café-visitor"), ensure_ascii=False).encode(
    "latin-1"
)
_CP1252_QUOTES = (
    b"{\x93visitor_code\x94: \x93kam-visitor-42\x94, \x93experiment_id\x94: 1}"
)
_BASE_TEXT = json.dumps(BASE)
_UTF16_LE_BOM = b"\xff\xfe" + _BASE_TEXT.encode("utf-16-le")
_UTF16_BE_BOM = b"\xfe\xff" + _BASE_TEXT.encode("utf-16-be")
_UTF32_LE_BOM = b"\xff\xfe\x00\x00" + _BASE_TEXT.encode("utf-32-le")
_UTF16_LE_NO_BOM = _BASE_TEXT.encode("utf-16-le")

_TWO_MIB = as_json(padding="x" * (2 * 1024 * 1024 - len(as_json(padding=""))))
_JUST_OVER = as_json(padding="y" * (MAX_MESSAGE_BYTES + 1 - len(as_json(padding=""))))
_EXACTLY_LIMIT = as_json(padding="z" * (MAX_MESSAGE_BYTES - len(as_json(padding=""))))
assert len(_TWO_MIB) == 2 * 1024 * 1024
assert len(_JUST_OVER) == MAX_MESSAGE_BYTES + 1
assert len(_EXACTLY_LIMIT) == MAX_MESSAGE_BYTES

_DEPTH = 100_000
_NESTED_ARRAYS = b"[" * _DEPTH + b"]" * _DEPTH
_NESTED_IN_FIELD = with_raw("visitor_code", "[" * _DEPTH + "]" * _DEPTH)
_NESTED_OBJECTS = b'{"a": ' * _DEPTH + b"1" + b"}" * _DEPTH
_SHALLOW_NESTING = with_raw("extra", "[" * 500 + "{}" + "]" * 500)
_HUGE_LITERAL = with_raw("experiment_id", "7" * 5000)

_FULL_JSON = as_json(
    experiment_id="000241398",
    variation_id="0",
    timestamp="2026-12-04T17:41:00.123456789+01:00",
    cross_device_id=1234567,
    amplitude_device_id="e1557a71-007d-4b43-a590-8d4ab3d2c82a",
    amplitude_session_id="1796402126005",
    experiment_key="pricing-page-layout",
    variation_key="detailed",
    unknown_field={"nested": [1, 2, {"deeper": None}]},
)

_AVRO_GOOD = avro_datum()
_AVRO_FULL = avro_datum(
    visitor_code="avro-visitor-7",
    experiment_id=7,
    variation_id=0,
    timestamp=9_999_999_999_999,
    cross_device_id="customer-7869795",
    amplitude_device_id="e1557a71-007d-4b43-a590-8d4ab3d2c82a",
    amplitude_session_id=-1,
    experiment_key="pricing-page-layout",
    variation_key="detailed",
)
_AVRO_CONTAINER = io.BytesIO()
fastavro.writer(_AVRO_CONTAINER, _SCHEMA, [_AVRO_BASE])
_AVRO_RANDOM = bytes(random.Random(20261204).getrandbits(8) for _ in range(64))
_OTHER_TYPES = fastavro.parse_schema(
    {
        "type": "record",
        "name": "KameleoonExposure",
        "namespace": "com.example.other",
        "fields": [
            {"name": "visitor_code", "type": "long"},
            {"name": "experiment_id", "type": "string"},
            {"name": "variation_id", "type": "double"},
            {"name": "timestamp", "type": "string"},
        ],
    }
)
_CLICK = fastavro.parse_schema(
    {
        "type": "record",
        "name": "Click",
        "fields": [
            {"name": "user", "type": "string"},
            {"name": "page", "type": "string"},
            {"name": "count", "type": "int"},
        ],
    }
)
# visitor_code, three longs, a union branch index of 7 (the schema has 2), and more.
_AVRO_BAD_UNION = (
    (zigzag(len(VISITOR)) + VISITOR.encode() + zigzag(1) + zigzag(2) + zigzag(TIME_MS))
    + zigzag(7)
    + b"\x00" * 4
)
_AVRO_BAD_UTF8 = zigzag(5) + b"caf\xe9x" + zigzag(1) + zigzag(2) + zigzag(TIME_MS)
_AVRO_BAD_UTF8 += b"\x00" * 5


BAD: list[BadCase] = [
    # Encodings.
    BadCase(
        "utf8_lone_continuation_byte",
        "json",
        _LONE_CONTINUATION,
        None,
        "parse",
        _utf8_reason(_LONE_CONTINUATION, 0x80),
    ),
    BadCase(
        "utf8_overlong_slash",
        "json",
        _OVERLONG_SLASH,
        None,
        "parse",
        _utf8_reason(_OVERLONG_SLASH, 0xC0),
    ),
    BadCase(
        "utf8_overlong_nul",
        "json",
        _OVERLONG_NUL,
        None,
        "parse",
        _utf8_reason(_OVERLONG_NUL, 0xC0),
    ),
    BadCase(
        "utf8_encoded_surrogates_cesu8",
        "json",
        _CESU_SURROGATE,
        None,
        "parse",
        _utf8_reason(_CESU_SURROGATE, 0xED),
    ),
    BadCase(
        "utf8_code_point_above_u10ffff",
        "json",
        _ABOVE_U10FFFF,
        None,
        "parse",
        _utf8_reason(_ABOVE_U10FFFF, 0xF4),
    ),
    BadCase(
        "utf8_sequence_cut_at_end",
        "json",
        _TRUNCATED_SEQUENCE,
        None,
        "parse",
        "message is not valid UTF-8: byte 0xe2 at position 30",
    ),
    BadCase(
        "latin1_text",
        "json",
        _LATIN1,
        None,
        "parse",
        _utf8_reason(_LATIN1, 0xE9),
    ),
    BadCase(
        "windows1252_curly_quotes",
        "json",
        _CP1252_QUOTES,
        None,
        "parse",
        "message is not valid UTF-8: byte 0x93 at position 1",
    ),
    BadCase(
        "utf16_le_with_bom",
        "json",
        _UTF16_LE_BOM,
        None,
        "parse",
        "message is not valid UTF-8: byte 0xff at position 0",
    ),
    BadCase(
        "utf16_be_with_bom",
        "json",
        _UTF16_BE_BOM,
        None,
        "parse",
        "message is not valid UTF-8: byte 0xfe at position 0",
    ),
    BadCase(
        "utf32_le_with_bom",
        "json",
        _UTF32_LE_BOM,
        None,
        "parse",
        "message is not valid UTF-8: byte 0xff at position 0",
    ),
    BadCase(
        "utf16_le_without_bom",
        "json",
        _UTF16_LE_NO_BOM,
        None,
        "parse",
        "malformed JSON: Expecting property name enclosed in double quotes at line 1 "
        "column 2",
    ),
    BadCase(
        "two_boms",
        "json",
        b"\xef\xbb\xbf\xef\xbb\xbf" + _BASE_TEXT.encode(),
        None,
        "parse",
        "malformed JSON: Unexpected UTF-8 BOM",
    ),
    BadCase(
        "escaped_lone_surrogate_in_visitor_code",
        "json",
        with_raw("visitor_code", '"kam-visitor-\\ud800"'),
        None,
        "parse",
        "visitor_code contains a lone UTF-16 surrogate",
    ),
    BadCase(
        "escaped_lone_surrogate_in_device_id",
        "json",
        with_raw("amplitude_device_id", '"\\udfff-device-0001"'),
        None,
        "parse",
        "amplitude_device_id contains a lone UTF-16 surrogate",
    ),
    BadCase(
        "escaped_lone_surrogate_in_cross_device_id",
        "json",
        with_raw("cross_device_id", '"customer-\\udbff"'),
        None,
        "parse",
        "cross_device_id contains a lone UTF-16 surrogate",
    ),
    # Truncation and emptiness.
    BadCase(
        "truncated_after_open_brace",
        "json",
        b"{",
        None,
        "parse",
        "malformed JSON: Expecting property name enclosed in double quotes at line 1 "
        "column 2",
    ),
    BadCase(
        "truncated_in_key",
        "json",
        b'{"visit',
        None,
        "parse",
        "malformed JSON: Unterminated string starting at line 1 column 2",
    ),
    BadCase(
        "truncated_after_colon",
        "json",
        b'{"visitor_code":',
        None,
        "parse",
        "malformed JSON: Expecting value at line 1 column 17",
    ),
    BadCase(
        "truncated_in_string_value",
        "json",
        as_json()[:25],
        None,
        "parse",
        "malformed JSON: Unterminated string starting at line 1 column 18",
    ),
    BadCase(
        "truncated_in_number",
        "json",
        as_json()[:-5],
        None,
        "parse",
        "malformed JSON: Expecting ',' delimiter at line 1 column "
        f"{len(as_json()) - 4}",
    ),
    BadCase(
        "truncated_before_closing_brace",
        "json",
        as_json()[:-1],
        None,
        "parse",
        f"malformed JSON: Expecting ',' delimiter at line 1 column {len(as_json())}",
    ),
    BadCase(
        "truncated_in_unicode_escape",
        "json",
        b'{"visitor_code": "kam\\u00',
        None,
        "parse",
        "malformed JSON: Invalid \\uXXXX escape at line 1 column 23",
    ),
    BadCase("empty", "json", b"", None, "parse", "message is empty"),
    BadCase(
        "whitespace_only", "json", b" \t\r\n \n", None, "parse", "message is empty"
    ),
    BadCase("bom_only", "json", b"\xef\xbb\xbf", None, "parse", "message is empty"),
    BadCase(
        "nul_byte_only",
        "json",
        b"\x00",
        None,
        "parse",
        "malformed JSON: Expecting value at line 1 column 1",
    ),
    # Size and depth.
    BadCase(
        "two_mib_message",
        "json",
        _TWO_MIB,
        None,
        "parse",
        "message is 2,097,152 bytes; an exposure is at most 1,048,576 bytes",
    ),
    BadCase(
        "one_byte_over_the_size_limit",
        "json",
        _JUST_OVER,
        None,
        "parse",
        "message is 1,048,577 bytes; an exposure is at most 1,048,576 bytes",
    ),
    BadCase(
        "arrays_nested_100k_levels",
        "json",
        _NESTED_ARRAYS,
        None,
        "parse",
        "JSON is nested too deeply",
    ),
    BadCase(
        "field_nested_100k_levels",
        "json",
        _NESTED_IN_FIELD,
        None,
        "parse",
        "JSON is nested too deeply",
    ),
    BadCase(
        "objects_nested_100k_levels",
        "json",
        _NESTED_OBJECTS,
        None,
        "parse",
        "JSON is nested too deeply",
    ),
    BadCase(
        "field_nested_500_levels",
        "json",
        with_raw("visitor_code", "[" * 500 + "]" * 500),
        None,
        "parse",
        "visitor_code must be a string, got an array",
    ),
    # Numbers.
    BadCase(
        "timestamp_1e400",
        "json",
        with_raw("timestamp", "1e400"),
        None,
        "parse",
        "timestamp must be whole epoch milliseconds, got the number inf",
    ),
    BadCase(
        "experiment_id_1e400",
        "json",
        with_raw("experiment_id", "1e400"),
        None,
        "parse",
        "experiment_id must be an integer, got the number inf",
    ),
    BadCase(
        "experiment_id_10_pow_30",
        "json",
        as_json(experiment_id=10**30),
        None,
        "parse",
        "experiment_id does not fit in a 64-bit integer",
    ),
    BadCase(
        "variation_id_2_pow_63",
        "json",
        as_json(variation_id=2**63),
        None,
        "parse",
        "variation_id does not fit in a 64-bit integer",
    ),
    BadCase(
        "experiment_id_5000_digit_string",
        "json",
        as_json(experiment_id="9" * 5000),
        None,
        "parse",
        "experiment_id does not fit in a 64-bit integer",
    ),
    BadCase(
        "experiment_id_5000_digit_literal",
        "json",
        _HUGE_LITERAL,
        None,
        "parse",
        "a number in the message has more than 4,300 digits",
    ),
    BadCase(
        "nan_literal",
        "json",
        with_raw("timestamp", "NaN"),
        None,
        "parse",
        "malformed JSON: NaN is not a JSON number",
    ),
    BadCase(
        "infinity_literal",
        "json",
        with_raw("experiment_id", "Infinity"),
        None,
        "parse",
        "malformed JSON: Infinity is not a JSON number",
    ),
    BadCase(
        "negative_infinity_literal",
        "json",
        with_raw("variation_id", "-Infinity"),
        None,
        "parse",
        "malformed JSON: -Infinity is not a JSON number",
    ),
    BadCase(
        "duplicate_keys_last_one_wrong",
        "json",
        as_json()[:-1] + b', "visitor_code": 7}',
        None,
        "parse",
        "visitor_code must be a string, got a number",
    ),
    # Not an object, or not JSON.
    BadCase(
        "json_array",
        "json",
        b"[1, 2]",
        None,
        "parse",
        "message is a JSON array, not a JSON object",
    ),
    BadCase(
        "array_of_exposures",
        "json",
        b"[" + as_json() + b"]",
        None,
        "parse",
        "message is a JSON array, not a JSON object",
    ),
    BadCase(
        "json_string",
        "json",
        b'"kam-visitor-42"',
        None,
        "parse",
        "message is a JSON string, not a JSON object",
    ),
    BadCase(
        "json_number",
        "json",
        b"1796402460000",
        None,
        "parse",
        "message is a JSON number, not a JSON object",
    ),
    BadCase(
        "json_null",
        "json",
        b"null",
        None,
        "parse",
        "message is a JSON null, not a JSON object",
    ),
    BadCase(
        "json_true",
        "json",
        b"true",
        None,
        "parse",
        "message is a JSON boolean, not a JSON object",
    ),
    BadCase(
        "two_objects_on_one_line",
        "json",
        as_json() + b" " + as_json(variation_id=1),
        None,
        "parse",
        f"malformed JSON: Extra data at line 1 column {len(as_json()) + 2}",
    ),
    BadCase(
        "two_lines_in_one_message",
        "json",
        as_json() + b"\n" + as_json(variation_id=2),
        None,
        "parse",
        "malformed JSON: Extra data at line 2 column 1",
    ),
    BadCase(
        "comment_before_object",
        "json",
        b"// exposure\n" + as_json(),
        None,
        "parse",
        "malformed JSON: Expecting value at line 1 column 1",
    ),
    BadCase(
        "single_quotes",
        "json",
        as_json().replace(b'"', b"'"),
        None,
        "parse",
        "malformed JSON: Expecting property name enclosed in double quotes at line 1 "
        "column 2",
    ),
    BadCase(
        "trailing_comma",
        "json",
        as_json()[:-1] + b",}",
        None,
        "parse",
        "malformed JSON: Expecting property name enclosed in double quotes at line 1 "
        f"column {len(as_json()) + 1}",
    ),
    BadCase(
        "raw_tab_in_string",
        "json",
        with_raw("visitor_code", '"kam\tvisitor"'),
        None,
        "parse",
        "malformed JSON: Invalid control character at line 1 column 22",
    ),
    BadCase(
        "hexadecimal_number",
        "json",
        with_raw("experiment_id", "0x3aef6"),
        None,
        "parse",
        "malformed JSON: Expecting ',' delimiter",
    ),
    # Missing fields.
    BadCase(
        "empty_object",
        "json",
        b"{}",
        None,
        "parse",
        "missing required field visitor_code",
    ),
    BadCase(
        "misspelled_visitor_code",
        "json",
        as_json(visitor_code=_MISSING, visitorCode=VISITOR),
        None,
        "parse",
        "missing required field visitor_code",
    ),
    BadCase(
        "missing_experiment_id",
        "json",
        as_json(experiment_id=_MISSING),
        None,
        "parse",
        "missing required field experiment_id",
    ),
    BadCase(
        "missing_variation_id",
        "json",
        as_json(variation_id=_MISSING),
        None,
        "parse",
        "missing required field variation_id",
    ),
    BadCase(
        "missing_timestamp",
        "json",
        as_json(timestamp=_MISSING),
        None,
        "parse",
        "missing required field timestamp",
    ),
    # visitor_code of every wrong type.
    BadCase(
        "visitor_code_number",
        "json",
        as_json(visitor_code=4242424242),
        None,
        "parse",
        "visitor_code must be a string, got a number",
    ),
    BadCase(
        "visitor_code_array",
        "json",
        as_json(visitor_code=[VISITOR]),
        None,
        "parse",
        "visitor_code must be a string, got an array",
    ),
    BadCase(
        "visitor_code_nested_object",
        "json",
        as_json(visitor_code={"id": VISITOR, "junk": [1, {"deeper": [None, {}]}]}),
        None,
        "parse",
        "visitor_code must be a string, got an object",
    ),
    BadCase(
        "visitor_code_boolean",
        "json",
        as_json(visitor_code=True),
        None,
        "parse",
        "visitor_code must be a string, got a boolean",
    ),
    BadCase(
        "visitor_code_null",
        "json",
        as_json(visitor_code=None),
        None,
        "parse",
        "missing required field visitor_code",
    ),
    BadCase(
        "visitor_code_empty",
        "json",
        as_json(visitor_code=""),
        None,
        "parse",
        "visitor_code is empty",
    ),
    # experiment_id of every wrong type and value.
    BadCase(
        "experiment_id_float_whole",
        "json",
        as_json(experiment_id=241398.0),
        None,
        "parse",
        "experiment_id must be an integer, got the number 241398.0",
    ),
    BadCase(
        "experiment_id_float_fraction",
        "json",
        as_json(experiment_id=12.5),
        None,
        "parse",
        "experiment_id must be an integer, got the number 12.5",
    ),
    BadCase(
        "experiment_id_boolean",
        "json",
        as_json(experiment_id=True),
        None,
        "parse",
        "experiment_id must be an integer, got a boolean",
    ),
    BadCase(
        "experiment_id_negative",
        "json",
        as_json(experiment_id=-5),
        None,
        "parse",
        "experiment_id must be positive, got -5",
    ),
    BadCase(
        "experiment_id_zero",
        "json",
        as_json(experiment_id=0),
        None,
        "parse",
        "experiment_id must be positive, got 0",
    ),
    BadCase(
        "experiment_id_zeros_string",
        "json",
        as_json(experiment_id="000"),
        None,
        "parse",
        "experiment_id must be positive, got 0",
    ),
    BadCase(
        "experiment_id_digits_and_letter",
        "json",
        as_json(experiment_id="12a"),
        None,
        "parse",
        "experiment_id must be an integer or a string of ASCII digits, got '12a'",
    ),
    BadCase(
        "experiment_id_arabic_indic_digits",
        "json",
        as_json(experiment_id="١٢"),
        None,
        "parse",
        "experiment_id must be an integer or a string of ASCII digits, got '١٢'",
    ),
    BadCase(
        "experiment_id_fullwidth_digits",
        "json",
        as_json(experiment_id="１２"),
        None,
        "parse",
        "experiment_id must be an integer or a string of ASCII digits, got '１２'",
    ),
    BadCase(
        "experiment_id_empty_string",
        "json",
        as_json(experiment_id=""),
        None,
        "parse",
        "experiment_id must be an integer or a string of ASCII digits, got ''",
    ),
    BadCase(
        "experiment_id_negative_string",
        "json",
        as_json(experiment_id="-5"),
        None,
        "parse",
        "experiment_id must be an integer or a string of ASCII digits, got '-5'",
    ),
    BadCase(
        "experiment_id_padded_string",
        "json",
        as_json(experiment_id=" 12"),
        None,
        "parse",
        "experiment_id must be an integer or a string of ASCII digits, got ' 12'",
    ),
    BadCase(
        "experiment_id_null",
        "json",
        as_json(experiment_id=None),
        None,
        "parse",
        "missing required field experiment_id",
    ),
    BadCase(
        "experiment_id_object",
        "json",
        as_json(experiment_id={"id": 12}),
        None,
        "parse",
        "experiment_id must be an integer, got an object",
    ),
    # variation_id.
    BadCase(
        "variation_id_minus_one",
        "json",
        as_json(variation_id=-1),
        None,
        "parse",
        "variation_id must be zero or more, got -1",
    ),
    BadCase(
        "variation_id_float",
        "json",
        as_json(variation_id=1.5),
        None,
        "parse",
        "variation_id must be an integer, got the number 1.5",
    ),
    BadCase(
        "variation_id_boolean",
        "json",
        as_json(variation_id=False),
        None,
        "parse",
        "variation_id must be an integer, got a boolean",
    ),
    BadCase(
        "variation_id_array",
        "json",
        as_json(variation_id=[1]),
        None,
        "parse",
        "variation_id must be an integer, got an array",
    ),
    # timestamp.
    BadCase(
        "timestamp_float_fraction",
        "json",
        as_json(timestamp=1796402460000.5),
        None,
        "parse",
        "timestamp must be whole epoch milliseconds, got the number 1796402460000.5",
    ),
    BadCase(
        "timestamp_float_whole",
        "json",
        as_json(timestamp=1796402460000.0),
        None,
        "parse",
        "timestamp must be whole epoch milliseconds, got the number 1796402460000.0",
    ),
    BadCase(
        "timestamp_exponent_notation",
        "json",
        with_raw("timestamp", "1.7964e12"),
        None,
        "parse",
        "timestamp must be whole epoch milliseconds, got the number 1796400000000.0",
    ),
    BadCase(
        "timestamp_boolean",
        "json",
        as_json(timestamp=True),
        None,
        "parse",
        "timestamp must be an integer, got a boolean",
    ),
    BadCase(
        "timestamp_array",
        "json",
        as_json(timestamp=[TIME_MS]),
        None,
        "parse",
        "timestamp must be an integer, got an array",
    ),
    BadCase(
        "timestamp_epoch_seconds",
        "json",
        as_json(timestamp=1_796_402_460),
        None,
        "parse",
        "timestamp 1796402460 is below 100,000,000,000: it looks like epoch seconds",
    ),
    BadCase(
        "timestamp_epoch_seconds_string",
        "json",
        as_json(timestamp="1796402460"),
        None,
        "parse",
        "timestamp 1796402460 is below 100,000,000,000: it looks like epoch seconds",
    ),
    BadCase(
        "timestamp_epoch_microseconds",
        "json",
        as_json(timestamp=1_796_402_460_000_000),
        None,
        "parse",
        "timestamp 1796402460000000 is above 9,999,999,999,999: it looks like epoch "
        "micro- or nanoseconds",
    ),
    BadCase(
        "timestamp_epoch_nanoseconds",
        "json",
        as_json(timestamp=1_796_402_460_000_000_000),
        None,
        "parse",
        "timestamp 1796402460000000000 is above 9,999,999,999,999: it looks like "
        "epoch micro- or nanoseconds",
    ),
    BadCase(
        "timestamp_negative",
        "json",
        as_json(timestamp=-1),
        None,
        "parse",
        "timestamp -1 is negative",
    ),
    BadCase(
        "timestamp_rfc3339_without_offset",
        "json",
        as_json(timestamp="2026-12-04T16:41:00.123"),
        None,
        "parse",
        "timestamp '2026-12-04T16:41:00.123' is neither epoch milliseconds nor an "
        "RFC 3339 time with an offset",
    ),
    BadCase(
        "timestamp_date_only",
        "json",
        as_json(timestamp="2026-12-04"),
        None,
        "parse",
        "timestamp '2026-12-04' is neither epoch milliseconds nor an RFC 3339 time",
    ),
    BadCase(
        "timestamp_invalid_date",
        "json",
        as_json(timestamp="2026-02-30T10:00:00Z"),
        None,
        "parse",
        "timestamp '2026-02-30T10:00:00Z' is not a valid time: day is out of range "
        "for month",
    ),
    BadCase(
        "timestamp_hour_24",
        "json",
        as_json(timestamp="2026-12-04T24:00:00Z"),
        None,
        "parse",
        "timestamp '2026-12-04T24:00:00Z' is not a valid time: hour must be in 0..23",
    ),
    BadCase(
        "timestamp_invalid_offset",
        "json",
        as_json(timestamp="2026-12-04T16:41:00+25:00"),
        None,
        "parse",
        "timestamp has an invalid offset +25:00",
    ),
    BadCase(
        "timestamp_yesterday",
        "json",
        as_json(timestamp="yesterday"),
        None,
        "parse",
        "timestamp 'yesterday' is neither epoch milliseconds nor an RFC 3339 time",
    ),
    BadCase(
        "timestamp_empty_string",
        "json",
        as_json(timestamp=""),
        None,
        "parse",
        "timestamp '' is neither epoch milliseconds nor an RFC 3339 time",
    ),
    BadCase(
        "timestamp_arabic_indic_digits",
        "json",
        as_json(timestamp="١٧٩٦٤٠٢٤٦٠٠٠٠"),
        None,
        "parse",
        "is neither epoch milliseconds nor an RFC 3339 time",
    ),
    # Boundary timestamps.
    BadCase(
        "timestamp_99_999_999_999",
        "json",
        as_json(timestamp=99_999_999_999),
        None,
        "parse",
        "timestamp 99999999999 is below 100,000,000,000: it looks like epoch seconds",
    ),
    BadCase(
        "timestamp_10_000_000_000_000",
        "json",
        as_json(timestamp=10_000_000_000_000),
        None,
        "parse",
        "timestamp 10000000000000 is above 9,999,999,999,999: it looks like epoch "
        "micro- or nanoseconds",
    ),
    BadCase(
        "timestamp_rfc3339_one_ms_before_range",
        "json",
        as_json(timestamp="1973-03-03T09:46:39.999Z"),
        None,
        "parse",
        f"timestamp '1973-03-03T09:46:39.999Z' is outside the accepted range {_RANGE}",
    ),
    BadCase(
        "timestamp_rfc3339_one_ms_after_range",
        "json",
        as_json(timestamp="2286-11-20T17:46:40.000Z"),
        None,
        "parse",
        f"timestamp '2286-11-20T17:46:40.000Z' is outside the accepted range {_RANGE}",
    ),
    # amplitude_session_id.
    BadCase(
        "session_id_minus_two",
        "json",
        as_json(amplitude_session_id=-2),
        None,
        "parse",
        "amplitude_session_id must be epoch milliseconds or -1, got -2",
    ),
    BadCase(
        "session_id_float",
        "json",
        as_json(amplitude_session_id=1796402126005.5),
        None,
        "parse",
        "amplitude_session_id must be an integer, got the number 1796402126005.5",
    ),
    BadCase(
        "session_id_letters",
        "json",
        as_json(amplitude_session_id="abc"),
        None,
        "parse",
        "amplitude_session_id must be an integer or a string of ASCII digits, got "
        "'abc'",
    ),
    BadCase(
        "session_id_boolean",
        "json",
        as_json(amplitude_session_id=True),
        None,
        "parse",
        "amplitude_session_id must be an integer, got a boolean",
    ),
    BadCase(
        "session_id_10_pow_30",
        "json",
        as_json(amplitude_session_id=10**30),
        None,
        "parse",
        "amplitude_session_id does not fit in a 64-bit integer",
    ),
    # cross_device_id.
    BadCase(
        "cross_device_id_boolean",
        "json",
        as_json(cross_device_id=False),
        None,
        "parse",
        "cross_device_id must be a string or an integer, got a boolean",
    ),
    BadCase(
        "cross_device_id_float",
        "json",
        as_json(cross_device_id=123456.5),
        None,
        "parse",
        "cross_device_id must be a string or an integer, got a number",
    ),
    BadCase(
        "cross_device_id_list",
        "json",
        as_json(cross_device_id=["customer-1"]),
        None,
        "parse",
        "cross_device_id must be a string or an integer, got an array",
    ),
    BadCase(
        "cross_device_id_zero",
        "json",
        as_json(cross_device_id=0),
        None,
        "map",
        "user_id (from cross_device_id) is a value Amplitude rejects as an id",
    ),
    BadCase(
        "cross_device_id_4_chars",
        "json",
        as_json(cross_device_id="c-42"),
        None,
        "map",
        "user_id (from cross_device_id) has 4 characters; Amplitude requires at "
        "least 5",
    ),
    BadCase(
        "cross_device_id_reserved_unknown",
        "json",
        as_json(cross_device_id="UnKnown"),
        None,
        "map",
        "user_id (from cross_device_id) is a value Amplitude rejects as an id",
    ),
    BadCase(
        "cross_device_id_1025_chars",
        "json",
        as_json(cross_device_id="c" * 1025),
        None,
        "map",
        "user_id (from cross_device_id) has 1025 characters; Amplitude allows at "
        "most 1024",
    ),
    # amplitude_device_id.
    BadCase(
        "device_id_number",
        "json",
        as_json(amplitude_device_id=123456789),
        None,
        "parse",
        "amplitude_device_id must be a string, got a number",
    ),
    BadCase(
        "device_id_boolean",
        "json",
        as_json(amplitude_device_id=True),
        None,
        "parse",
        "amplitude_device_id must be a string, got a boolean",
    ),
    BadCase(
        "device_id_4_chars",
        "json",
        as_json(amplitude_device_id="dev4"),
        None,
        "map",
        "device_id (from amplitude_device_id) has 4 characters; Amplitude requires "
        "at least 5",
    ),
    BadCase(
        "device_id_nil_uuid",
        "json",
        as_json(amplitude_device_id="00000000-0000-0000-0000-000000000000"),
        None,
        "map",
        "device_id (from amplitude_device_id) is a value Amplitude rejects as an id",
    ),
    BadCase(
        "device_id_reserved_lmy47d",
        "json",
        as_json(amplitude_device_id="LMY47D"),
        None,
        "map",
        "device_id (from amplitude_device_id) is a value Amplitude rejects as an id",
    ),
    BadCase(
        "device_id_1025_chars",
        "json",
        as_json(amplitude_device_id="d" * 1025),
        None,
        "map",
        "device_id (from amplitude_device_id) has 1025 characters; Amplitude allows "
        "at most 1024",
    ),
    # Readable keys.
    BadCase(
        "experiment_key_number",
        "json",
        as_json(experiment_key=42),
        None,
        "parse",
        "experiment_key must be a string, got a number",
    ),
    BadCase(
        "variation_key_array",
        "json",
        as_json(variation_key=["detailed"]),
        None,
        "parse",
        "variation_key must be a string, got an array",
    ),
    # Boundary visitor codes.
    BadCase(
        "visitor_code_256_chars",
        "json",
        as_json(visitor_code="v" * 256),
        None,
        "parse",
        "visitor_code has 256 characters; Kameleoon allows at most 255",
    ),
    BadCase(
        "visitor_code_4_chars",
        "json",
        as_json(visitor_code="v-42"),
        None,
        "map",
        "device_id (from visitor_code) has 4 characters; Amplitude requires at least 5",
    ),
    BadCase(
        "visitor_code_reserved_null",
        "json",
        as_json(visitor_code="null"),
        None,
        "map",
        "device_id (from visitor_code) is a value Amplitude rejects as an id",
    ),
    BadCase(
        "visitor_code_reserved_anonymous",
        "json",
        as_json(visitor_code="Anonymous"),
        None,
        "map",
        "device_id (from visitor_code) is a value Amplitude rejects as an id",
    ),
    BadCase(
        "visitor_code_reserved_undefined",
        "json",
        as_json(visitor_code="UNDEFINED"),
        None,
        "map",
        "device_id (from visitor_code) is a value Amplitude rejects as an id",
    ),
    BadCase(
        "visitor_code_reserved_minus_one",
        "json",
        as_json(visitor_code="-1"),
        None,
        "map",
        "device_id (from visitor_code) is a value Amplitude rejects as an id",
    ),
    # Avro.
    BadCase(
        "avro_random_bytes",
        "avro",
        _AVRO_RANDOM,
        None,
        "parse",
        "not an Avro datum of the exposure schema",
    ),
    BadCase(
        "avro_empty",
        "avro",
        b"",
        None,
        "parse",
        "message is empty",
    ),
    BadCase(
        "avro_truncated_in_visitor_code",
        "avro",
        _AVRO_GOOD[:6],
        None,
        "parse",
        "not an Avro datum of the exposure schema: the data ends before the record "
        "is complete",
    ),
    BadCase(
        "avro_truncated_in_timestamp",
        "avro",
        _AVRO_GOOD[: len(VISITOR) + 1 + 3 + 3 + 2],
        None,
        "parse",
        "not an Avro datum of the exposure schema: the data ends before the record "
        "is complete",
    ),
    BadCase(
        "avro_truncated_before_optional_fields",
        "avro",
        _AVRO_GOOD[:-3],
        None,
        "parse",
        "not an Avro datum of the exposure schema: the data ends before the record "
        "is complete",
    ),
    BadCase(
        "avro_trailing_bytes",
        "avro",
        _AVRO_GOOD + b"\x00\x00",
        None,
        "parse",
        "not an Avro datum of the exposure schema: 2 bytes left over after the record",
    ),
    BadCase(
        "avro_trailing_byte",
        "avro",
        _AVRO_GOOD + b"\x02",
        None,
        "parse",
        "not an Avro datum of the exposure schema: 1 byte left over after the record",
    ),
    BadCase(
        "avro_other_schema_field_types",
        "avro",
        avro_datum(
            _OTHER_TYPES,
            visitor_code=12345,
            experiment_id="241398",
            variation_id=1.5,
            timestamp="2026-12-04T16:41:00Z",
        ),
        None,
        "parse",
        "not an Avro datum of the exposure schema: the data ends before the record "
        "is complete",
    ),
    BadCase(
        "avro_other_schema_record",
        "avro",
        avro_datum(_CLICK, user=VISITOR, page="/pricing", count=3),
        None,
        "parse",
        "not an Avro datum of the exposure schema: a union branch index is out of "
        "range",
    ),
    BadCase(
        "avro_union_branch_out_of_range",
        "avro",
        _AVRO_BAD_UNION,
        None,
        "parse",
        "not an Avro datum of the exposure schema: a union branch index is out of "
        "range",
    ),
    BadCase(
        "avro_negative_string_length",
        "avro",
        zigzag(-5) + b"kam-visitor",
        None,
        "parse",
        "not an Avro datum of the exposure schema: a string has a negative length",
    ),
    BadCase(
        "avro_string_length_beyond_message",
        "avro",
        zigzag(1 << 40) + b"kam-visitor",
        None,
        "parse",
        "not an Avro datum of the exposure schema: the data ends before the record "
        "is complete",
    ),
    BadCase(
        "avro_invalid_utf8_string",
        "avro",
        _AVRO_BAD_UTF8,
        None,
        "parse",
        "'utf-8' codec can't decode byte 0xe9 in position 3",
    ),
    BadCase(
        "avro_container_file_as_message",
        "avro",
        _AVRO_CONTAINER.getvalue(),
        None,
        "parse",
        "an Avro container file, not a single datum",
    ),
    BadCase(
        "avro_json_without_attribute",
        "avro",
        as_json(visitor_code="json-to-avro-visitor"),
        None,
        "parse",
        "looks like JSON",
    ),
    BadCase(
        "avro_datum_with_json_attribute",
        "avro",
        _AVRO_GOOD,
        {_JSON_ATTRIBUTE: "JSON"},
        "parse",
        "message is not valid UTF-8: byte 0xec at position 15",
    ),
    BadCase(
        "avro_two_mib_message",
        "avro",
        avro_datum(experiment_key="k" * (2 * 1024 * 1024)),
        None,
        "parse",
        "an exposure is at most 1,048,576 bytes",
    ),
    BadCase(
        "avro_experiment_id_zero",
        "avro",
        avro_datum(experiment_id=0),
        None,
        "parse",
        "experiment_id must be positive, got 0",
    ),
    BadCase(
        "avro_variation_id_negative",
        "avro",
        avro_datum(variation_id=-3),
        None,
        "parse",
        "variation_id must be zero or more, got -3",
    ),
    BadCase(
        "avro_timestamp_seconds",
        "avro",
        avro_datum(timestamp=1_796_402_460),
        None,
        "parse",
        "timestamp 1796402460 is below 100,000,000,000: it looks like epoch seconds",
    ),
    BadCase(
        "avro_timestamp_nanoseconds",
        "avro",
        avro_datum(timestamp=1_796_402_460_000_000_000),
        None,
        "parse",
        "it looks like epoch micro- or nanoseconds",
    ),
    BadCase(
        "avro_visitor_code_empty",
        "avro",
        avro_datum(visitor_code=""),
        None,
        "parse",
        "visitor_code is empty",
    ),
    BadCase(
        "avro_visitor_code_256_chars",
        "avro",
        avro_datum(visitor_code="a" * 256),
        None,
        "parse",
        "visitor_code has 256 characters; Kameleoon allows at most 255",
    ),
    BadCase(
        "avro_session_id_minus_two",
        "avro",
        avro_datum(amplitude_session_id=-2),
        None,
        "parse",
        "amplitude_session_id must be epoch milliseconds or -1, got -2",
    ),
    BadCase(
        "avro_device_id_reserved",
        "avro",
        avro_datum(amplitude_device_id="None"),
        None,
        "map",
        "device_id (from amplitude_device_id) is a value Amplitude rejects as an id",
    ),
    BadCase(
        "avro_cross_device_id_4_chars",
        "avro",
        avro_datum(cross_device_id="u-42"),
        None,
        "map",
        "user_id (from cross_device_id) has 4 characters; Amplitude requires at "
        "least 5",
    ),
]


GOOD: list[GoodCase] = [
    GoodCase(
        "bom_prefixed_json",
        "json",
        b"\xef\xbb\xbf" + as_json(visitor_code="bom-visitor"),
        None,
        [identify("95b2ca86fc0a613360fc50f27e264e07", visitor="bom-visitor")],
    ),
    GoodCase(
        "surrounding_whitespace_and_crlf",
        "json",
        b" \t" + as_json(visitor_code="crlf-visitor") + b"\r\n",
        None,
        [identify("3c37c065f5e8671c95d0fff3286d9a9e", visitor="crlf-visitor")],
    ),
    GoodCase(
        "visitor_code_255_chars",
        "json",
        as_json(visitor_code="v" * 255),
        None,
        [identify("325b0df0d9ce104df5a02ba3c5914712", visitor="v" * 255)],
    ),
    GoodCase(
        "visitor_code_255_astral_chars",
        "json",
        as_json(visitor_code="\U0001f600" * 255),
        None,
        [identify("4d079d3fe3e809bcf20a69ae605b2951", visitor="\U0001f600" * 255)],
    ),
    GoodCase(
        "visitor_code_5_chars",
        "json",
        as_json(visitor_code="v-421"),
        None,
        [identify("079cb9b3fe8be7a694dd4bd33964f3d4", visitor="v-421")],
    ),
    GoodCase(
        "device_id_5_chars",
        "json",
        as_json(amplitude_device_id="dev-5"),
        None,
        [identify("9b977af45640c7872855fd5963750a3a", device_id="dev-5")],
    ),
    GoodCase(
        "device_id_1024_chars",
        "json",
        as_json(amplitude_device_id="d" * 1024, visitor_code="long-device-visitor"),
        None,
        [
            identify(
                "a99be7ea43673bc7243db07322a1f770",
                visitor="long-device-visitor",
                device_id="d" * 1024,
            )
        ],
    ),
    GoodCase(
        "timestamp_100_000_000_000",
        "json",
        as_json(timestamp=100_000_000_000),
        None,
        [identify("b529cd37dd96b7c2edb9e785ed8d83f3", time_ms=100_000_000_000)],
    ),
    GoodCase(
        "timestamp_9_999_999_999_999",
        "json",
        as_json(timestamp=9_999_999_999_999),
        None,
        [identify("11a704d87f664015d236602a17c88a0f", time_ms=9_999_999_999_999)],
    ),
    GoodCase(
        "timestamp_rfc3339_first_ms_of_range",
        "json",
        as_json(timestamp="1973-03-03T09:46:40Z"),
        None,
        [identify("b529cd37dd96b7c2edb9e785ed8d83f3", time_ms=100_000_000_000)],
    ),
    GoodCase(
        "timestamp_rfc3339_lowercase_z_and_space",
        "json",
        as_json(timestamp="2026-12-04 16:41:00.5z", visitor_code="space-visitor"),
        None,
        [
            identify(
                "2e1fb67d417a964a1fe9505a3b40e197",
                visitor="space-visitor",
                time_ms=TIME_MS + 500,
            )
        ],
    ),
    GoodCase(
        "ids_as_digit_strings_with_leading_zeros",
        "json",
        as_json(
            experiment_id="0000241398",
            variation_id="00",
            timestamp="1796402460001",
        ),
        None,
        [
            identify(
                "cb71853a126aa9d2802585fe5657c0e0", variation=0, time_ms=TIME_MS + 1
            )
        ],
    ),
    GoodCase(
        "largest_64_bit_ids",
        "json",
        as_json(experiment_id=2**63 - 1, variation_id=str(2**63 - 1)),
        None,
        [
            identify(
                "d751bde3356a0772ad9912381f82339c",
                experiment=2**63 - 1,
                variation=2**63 - 1,
            )
        ],
    ),
    GoodCase(
        "optional_fields_null_or_empty",
        "json",
        as_json(
            visitor_code="optional-visitor",
            cross_device_id=None,
            amplitude_device_id="",
            amplitude_session_id="",
            experiment_key=None,
            variation_key="",
        ),
        None,
        [identify("d2d14309f19d387b69ca5cf0b30b1b3f", visitor="optional-visitor")],
    ),
    GoodCase(
        "session_id_minus_one_as_string",
        "json",
        as_json(amplitude_session_id="-1", visitor_code="no-session-visitor"),
        None,
        [
            identify(
                "30345c1822ac907d3be155f0899ed572",
                visitor="no-session-visitor",
                session_id=-1,
            )
        ],
    ),
    GoodCase(
        "every_field_in_another_form",
        "json",
        _FULL_JSON,
        None,
        [
            identify(
                "7cd397068c4bd767f9c4ebdd44de0528",
                device_id="e1557a71-007d-4b43-a590-8d4ab3d2c82a",
                user_id="1234567",
                session_id=1_796_402_126_005,
                variation=0,
                time_ms=TIME_MS + 123,
            )
        ],
    ),
    GoodCase(
        "unknown_field_nested_500_levels",
        "json",
        _SHALLOW_NESTING,
        None,
        [identify("9b977af45640c7872855fd5963750a3a")],
    ),
    GoodCase(
        "exactly_the_size_limit",
        "json",
        _EXACTLY_LIMIT,
        None,
        [identify("9b977af45640c7872855fd5963750a3a")],
    ),
    GoodCase(
        "json_with_other_attributes",
        "json",
        as_json(visitor_code="attributes-visitor"),
        {"origin": "kameleoon", "googclient_schemaencoding": "BINARY"},
        [identify("2635ed916d1a76a319348ae22a2a555b", visitor="attributes-visitor")],
    ),
    GoodCase(
        "ids_with_5000_leading_zeros",
        "json",
        as_json(
            visitor_code="zero-padded-visitor",
            experiment_id="0" * 5000 + "241398",
            timestamp="0" * 5000 + str(TIME_MS),
        ),
        None,
        [identify("3e7c9fcf70a4283f45fc242ac06d9217", visitor="zero-padded-visitor")],
    ),
    GoodCase(
        "avro_datum",
        "avro",
        _AVRO_GOOD,
        None,
        [identify("9b977af45640c7872855fd5963750a3a")],
    ),
    GoodCase(
        "avro_datum_with_every_field",
        "avro",
        _AVRO_FULL,
        None,
        [
            identify(
                "235b6ae6d8171ab3b827d1104c1dc694",
                visitor="avro-visitor-7",
                device_id="e1557a71-007d-4b43-a590-8d4ab3d2c82a",
                user_id="customer-7869795",
                session_id=-1,
                experiment=7,
                variation=0,
                time_ms=9_999_999_999_999,
            )
        ],
    ),
    GoodCase(
        "json_to_avro_topic_with_json_attribute",
        "avro",
        as_json(visitor_code="json-on-avro-topic"),
        {_JSON_ATTRIBUTE: "JSON"},
        [identify("4fc9598c3ecdce058ca0a7bfff166603", visitor="json-on-avro-topic")],
    ),
    GoodCase(
        "json_attribute_in_lower_case",
        "avro",
        as_json(visitor_code="lower-case-attribute"),
        {_JSON_ATTRIBUTE: "json"},
        [identify("8526c1af2b24459a4f64e1cfc662e5fa", visitor="lower-case-attribute")],
    ),
]

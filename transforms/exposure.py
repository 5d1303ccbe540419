"""Kameleoon exposure messages: the raw envelope, the validated model and its parsers.

An exposure arrives as bytes (a Pub/Sub message's data or a line of a file) and is
parsed here into an :class:`Exposure`, or rejected with an :class:`InvalidExposure`
whose reason says in plain words what is wrong. Nothing here touches Beam, so every rule
is testable as a plain function. The rules are those of the job's contract: JSON
objects or schemaless Avro datums of ``schemas/exposure.avsc``, ids as integers or ASCII
digit strings, timestamps in epoch milliseconds or RFC 3339 with an offset, and no unit
ever guessed.
"""

from __future__ import annotations

import dataclasses
import datetime
import io
import json
import logging
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import fastavro
from apache_beam.io.filesystems import FileSystems

_LOGGER = logging.getLogger(__name__)

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "schemas" / "exposure.avsc"

INPUT_FORMATS = ("json", "avro", "dead_letter")

# An exposure is a few hundred bytes; anything far larger is junk and is not parsed.
MAX_MESSAGE_BYTES = 1 << 20
MAX_VISITOR_CODE_LENGTH = 255
# Epoch milliseconds from 1973-03-03 to 2286-11-20. Below: seconds; above: micro/nanos.
MIN_TIMESTAMP_MS = 100_000_000_000
MAX_TIMESTAMP_MS = 9_999_999_999_999
MAX_ID = (1 << 63) - 1
MIN_ID = -(1 << 63)

# ASCII digits only (``\d`` would match other scripts' digits); no trailing newline.
_RFC3339 = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt ]([0-9]{2}):([0-9]{2}):([0-9]{2})"
    r"(?:\.([0-9]+))?([Zz]|[+-][0-9]{2}:[0-9]{2})"
)
_SCHEMA_ENCODING_ATTRIBUTE = "googclient_schemaencoding"


class InvalidExposure(ValueError):
    """A message that cannot become an exposure; ``reason`` says why in plain words."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclasses.dataclass(frozen=True, slots=True)
class RawMessage:
    """A message as received, kept byte for byte for the dead letter.

    Attributes:
      payload: the message data (a Pub/Sub message's data, a line of a file).
      attributes: the Pub/Sub message's attributes, or None.
      payload_encoding: how a dead letter must render the payload when it is not
        plain bytes: ``json`` for a record read from an Avro container file (the payload
        is then that record as JSON), ``path`` for a file that could not be read (the
        payload is then the file's name). None means "decide from the bytes".
    """

    payload: bytes
    attributes: Mapping[str, str] | None = None
    payload_encoding: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Exposure:
    """One validated Kameleoon exposure."""

    visitor_code: str
    experiment_id: int
    variation_id: int
    time_ms: int
    cross_device_id: str | None = None
    amplitude_device_id: str | None = None
    amplitude_session_id: int | None = None
    experiment_key: str | None = None
    variation_key: str | None = None


def load_schema(path: str | Path | None = None) -> dict:
    """Returns the parsed Avro schema at ``path``, or the shipped exposure schema.

    ``path`` may be on any file system Beam knows (``gs://`` on Dataflow, where the
    template's launcher reads it).
    """
    if not path:
        with open(SCHEMA_PATH, encoding="utf-8") as handle:
            return fastavro.parse_schema(json.load(handle))
    with FileSystems.open(str(path), compression_type="uncompressed") as handle:
        return fastavro.parse_schema(json.loads(handle.read()))


def parse_message(
    message: RawMessage,
    input_format: str,
    writer_schema: dict | None = None,
    reader_schema: dict | None = None,
) -> Exposure:
    """Parses one message in ``input_format`` into an exposure.

    Args:
      message: the message as received.
      input_format: ``json``, ``avro`` or ``dead_letter`` (a message read back from a
        dead letter: a JSON object is read as JSON, anything else as an Avro datum).
      writer_schema: the schema Avro datums were written with (default: the shipped
        one).
      reader_schema: the shipped schema, which the writer schema resolves to.

    Raises:
      InvalidExposure: with the reason the message is rejected.
    """
    data = message.payload
    if len(data) > MAX_MESSAGE_BYTES:
        raise InvalidExposure(
            f"message is {len(data):,} bytes; an exposure is at most "
            f"{MAX_MESSAGE_BYTES:,} bytes"
        )
    attributes = message.attributes or {}
    if attributes.get(_SCHEMA_ENCODING_ATTRIBUTE, "").upper() == "JSON":
        input_format = "json"
    if input_format == "json":
        return exposure_from_fields(_decode_json(data))
    if input_format == "avro":
        return exposure_from_fields(_decode_avro(data, writer_schema, reader_schema))
    if input_format == "dead_letter":
        try:
            fields = _decode_json(data)
        except InvalidExposure as json_error:
            try:
                fields = _decode_avro(data, writer_schema, reader_schema)
            except InvalidExposure as avro_error:
                raise InvalidExposure(
                    f"neither a JSON exposure ({json_error.reason}) nor an Avro "
                    f"exposure ({avro_error.reason})"
                ) from None
        return exposure_from_fields(fields)
    raise ValueError(f"unknown input format {input_format!r}")


def _decode_json(data: bytes) -> dict:
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise InvalidExposure(
            f"message is not valid UTF-8: byte 0x{data[error.start]:02x} at "
            f"position {error.start}"
        ) from None
    if not text.strip():
        raise InvalidExposure("message is empty")
    try:
        value = json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as error:
        # Some of json's messages end in "at" ("Unterminated string starting at").
        message = error.msg.removesuffix(" at")
        raise InvalidExposure(
            f"malformed JSON: {message} at line {error.lineno} column {error.colno}"
        ) from None
    except InvalidExposure:
        raise
    except RecursionError:
        raise InvalidExposure("JSON is nested too deeply") from None
    except ValueError as error:
        if "digits" in str(error):
            raise InvalidExposure(
                "a number in the message has more than 4,300 digits"
            ) from None
        raise InvalidExposure(f"malformed JSON: {error}") from None
    if not isinstance(value, dict):
        raise InvalidExposure(
            f"message is a JSON {_json_type(value)}, not a JSON object"
        )
    return value


def _reject_constant(name: str) -> Any:
    raise InvalidExposure(f"malformed JSON: {name} is not a JSON number")


def _decode_avro(
    data: bytes, writer_schema: dict | None, reader_schema: dict | None
) -> dict:
    reader_schema = reader_schema or _shipped_schema()
    writer_schema = writer_schema or reader_schema
    resolve_to = None if writer_schema is reader_schema else reader_schema
    if not data:
        raise InvalidExposure("message is empty")
    stream = io.BytesIO(data)
    try:
        record = fastavro.schemaless_reader(stream, writer_schema, resolve_to)
    except Exception as error:  # fastavro raises many types on junk input.
        raise InvalidExposure(
            f"not an Avro datum of the exposure schema: {_avro_failure(data, error)}"
        ) from None
    left_over = len(data) - stream.tell()
    if left_over:
        raise InvalidExposure(
            f"not an Avro datum of the exposure schema: {left_over} "
            f"{'byte' if left_over == 1 else 'bytes'} left over after the record"
        )
    if not isinstance(record, dict):
        raise InvalidExposure("not an Avro record")
    return record


def check_writer_schema(writer_schema: dict, reader_schema: dict | None = None) -> None:
    """Refuses a writer schema that lacks a field the exposure schema requires.

    Raises:
      ValueError: naming the missing fields.
    """
    reader_schema = reader_schema or _shipped_schema()
    if not isinstance(writer_schema, dict) or writer_schema.get("type") != "record":
        raise ValueError("the Avro schema must be a record schema")
    written = {field["name"] for field in writer_schema.get("fields", [])}
    required = [
        field["name"] for field in reader_schema["fields"] if "default" not in field
    ]
    missing = [name for name in required if name not in written]
    if missing:
        raise ValueError(
            "the Avro schema lacks the exposure field(s) " + ", ".join(missing)
        )


_AVRO_CONTAINER_MAGIC = b"Obj\x01"
_NEGATIVE_LENGTH = re.compile(r"Expected -[0-9]+ bytes")


def _avro_failure(data: bytes, error: Exception) -> str:
    """fastavro's error on a bad datum, in words a publisher can act on."""
    if data.startswith(_AVRO_CONTAINER_MAGIC):
        return "the message is an Avro container file, not a single datum"
    if data.lstrip()[:1] == b"{":
        return (
            "the message looks like JSON; publish it with the attribute "
            "googclient_schemaencoding=JSON or use --input_format json"
        )
    text = str(error)
    if isinstance(error, EOFError) and _NEGATIVE_LENGTH.search(text):
        return "a string has a negative length"
    if isinstance(error, EOFError) or "string index out of range" in text:
        return "the data ends before the record is complete"
    if "list index out of range" in text:
        return "a union branch index is out of range"
    return f"{type(error).__name__}: {_short(text)}"


_SHIPPED_SCHEMA: dict | None = None


def _shipped_schema() -> dict:
    global _SHIPPED_SCHEMA
    if _SHIPPED_SCHEMA is None:
        _SHIPPED_SCHEMA = load_schema()
    return _SHIPPED_SCHEMA


def exposure_from_fields(fields: Mapping[str, Any]) -> Exposure:
    """Validates a mapping of exposure fields (from JSON or Avro) into an exposure."""
    visitor_code = fields.get("visitor_code")
    if visitor_code is None:
        raise InvalidExposure("missing required field visitor_code")
    if not isinstance(visitor_code, str):
        raise InvalidExposure(
            "visitor_code must be a string, got "
            f"{_with_article(_json_type(visitor_code))}"
        )
    if not visitor_code:
        raise InvalidExposure("visitor_code is empty")
    if len(visitor_code) > MAX_VISITOR_CODE_LENGTH:
        raise InvalidExposure(
            f"visitor_code has {len(visitor_code)} characters; Kameleoon allows at "
            f"most {MAX_VISITOR_CODE_LENGTH}"
        )
    _check_unicode(visitor_code, "visitor_code")
    experiment_id = _parse_id(fields, "experiment_id", minimum=1)
    variation_id = _parse_id(fields, "variation_id", minimum=0)
    time_ms = _parse_timestamp(fields)
    return Exposure(
        visitor_code=visitor_code,
        experiment_id=experiment_id,
        variation_id=variation_id,
        time_ms=time_ms,
        cross_device_id=_optional_id_string(fields, "cross_device_id"),
        amplitude_device_id=_optional_string(fields, "amplitude_device_id"),
        amplitude_session_id=_parse_session_id(fields),
        experiment_key=_optional_string(fields, "experiment_key"),
        variation_key=_optional_string(fields, "variation_key"),
    )


def _parse_id(fields: Mapping[str, Any], name: str, minimum: int) -> int:
    if name not in fields or fields[name] is None:
        raise InvalidExposure(f"missing required field {name}")
    value = _integer(fields[name], name)
    if value < minimum:
        bound = "positive" if minimum == 1 else "zero or more"
        raise InvalidExposure(f"{name} must be {bound}, got {value}")
    return value


def _integer(value: Any, name: str) -> int:
    """A 64-bit int, or an ASCII digit string; never a bool, float or other string."""
    if isinstance(value, bool):
        raise InvalidExposure(f"{name} must be an integer, got a boolean")
    if isinstance(value, float):
        raise InvalidExposure(f"{name} must be an integer, got the number {value!r}")
    if isinstance(value, str):
        if not (value.isascii() and value.isdigit()):
            raise InvalidExposure(
                f"{name} must be an integer or a string of ASCII digits, got "
                f"{_short(repr(value))}"
            )
        # Checked before int(): a digit string of thousands of digits is junk, and
        # int() refuses very long ones with a ValueError of its own.
        if len(value.lstrip("0")) > len(str(MAX_ID)):
            raise _too_large(name)
        value = int(value.lstrip("0") or "0")
    if not isinstance(value, int):
        raise InvalidExposure(
            f"{name} must be an integer, got {_with_article(_json_type(value))}"
        )
    if not MIN_ID <= value <= MAX_ID:
        raise _too_large(name)
    return value


def _too_large(name: str) -> InvalidExposure:
    return InvalidExposure(f"{name} does not fit in a 64-bit integer")


def _parse_timestamp(fields: Mapping[str, Any]) -> int:
    if "timestamp" not in fields or fields["timestamp"] is None:
        raise InvalidExposure("missing required field timestamp")
    value = fields["timestamp"]
    if isinstance(value, str) and not (value.isascii() and value.isdigit()):
        millis = _parse_rfc3339(value)
        if not MIN_TIMESTAMP_MS <= millis <= MAX_TIMESTAMP_MS:
            raise InvalidExposure(
                f"timestamp {_short(repr(value))} is outside the accepted range "
                f"{_format_ms(MIN_TIMESTAMP_MS)} to {_format_ms(MAX_TIMESTAMP_MS)}"
            )
        return millis
    if isinstance(value, float):
        raise InvalidExposure(
            f"timestamp must be whole epoch milliseconds, got the number {value!r}"
        )
    millis = _integer(value, "timestamp")
    if millis < 0:
        raise InvalidExposure(
            f"timestamp {millis} is negative; send epoch milliseconds from "
            f"{MIN_TIMESTAMP_MS:,} to {MAX_TIMESTAMP_MS:,}"
        )
    if millis < MIN_TIMESTAMP_MS:
        raise InvalidExposure(
            f"timestamp {millis} is below {MIN_TIMESTAMP_MS:,}: it looks like epoch "
            "seconds, not milliseconds (send milliseconds; the unit is never guessed)"
        )
    if millis > MAX_TIMESTAMP_MS:
        raise InvalidExposure(
            f"timestamp {millis} is above {MAX_TIMESTAMP_MS:,}: it looks like epoch "
            "micro- or nanoseconds, not milliseconds (send milliseconds; the unit is "
            "never guessed)"
        )
    return millis


def _format_ms(millis: int) -> str:
    moment = datetime.datetime.fromtimestamp(millis / 1000, datetime.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{millis % 1000:03d}Z"


def _parse_rfc3339(value: str) -> int:
    match = _RFC3339.fullmatch(value)
    if not match:
        raise InvalidExposure(
            f"timestamp {_short(repr(value))} is neither epoch milliseconds nor an "
            "RFC 3339 time with an offset (e.g. 2026-12-04T16:41:00.123Z)"
        )
    year, month, day, hour, minute, second, fraction, offset = match.groups()
    if offset in ("Z", "z"):
        tz = datetime.timezone.utc
    else:
        sign = 1 if offset[0] == "+" else -1
        hours, minutes = int(offset[1:3]), int(offset[4:6])
        if hours > 23 or minutes > 59:
            raise InvalidExposure(f"timestamp has an invalid offset {offset}")
        tz = datetime.timezone(sign * datetime.timedelta(hours=hours, minutes=minutes))
    try:
        moment = datetime.datetime(
            int(year),
            int(month),
            int(day),
            int(hour),
            int(minute),
            int(second),
            tzinfo=tz,
        )
    except ValueError as error:
        raise InvalidExposure(
            f"timestamp {_short(repr(value))} is not a valid time: {error}"
        ) from None
    epoch = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
    whole_seconds = (moment - epoch) // datetime.timedelta(seconds=1)
    millis = int((fraction or "0")[:3].ljust(3, "0"))
    return whole_seconds * 1000 + millis


def _parse_session_id(fields: Mapping[str, Any]) -> int | None:
    value = fields.get("amplitude_session_id")
    if value is None or value == "":
        return None
    if value == "-1":
        return -1
    session_id = _integer(value, "amplitude_session_id")
    if session_id < -1:
        raise InvalidExposure(
            f"amplitude_session_id must be epoch milliseconds or -1, got {session_id}"
        )
    return session_id


# Amplitude's limit for a string value; the readable keys become event properties.
MAX_STRING_LENGTH = 1024


def _optional_string(fields: Mapping[str, Any], name: str) -> str | None:
    value = fields.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise InvalidExposure(
            f"{name} must be a string, got {_with_article(_json_type(value))}"
        )
    _check_unicode(value, name)
    if len(value) > MAX_STRING_LENGTH and name in ("experiment_key", "variation_key"):
        raise InvalidExposure(
            f"{name} has {len(value)} characters; Amplitude allows at most "
            f"{MAX_STRING_LENGTH:,} in a property value"
        )
    return value


def _check_unicode(value: str, name: str) -> None:
    """Refuses lone surrogates (JSON allows ``\\ud800``), which UTF-8 cannot encode."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidExposure(
            f"{name} contains a lone UTF-16 surrogate, which is not valid Unicode text"
        ) from None


def _optional_id_string(fields: Mapping[str, Any], name: str) -> str | None:
    """An optional string or integer id; an integer becomes its decimal string."""
    value = fields.get(name)
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if value is not None and not isinstance(value, str):
        raise InvalidExposure(
            f"{name} must be a string or an integer, got "
            f"{_with_article(_json_type(value))}"
        )
    return _optional_string(fields, name)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, (list, tuple)):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _with_article(type_name: str) -> str:
    if type_name == "null":
        return "null"
    return ("an " if type_name[0] in "aeiou" else "a ") + type_name


def _short(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."

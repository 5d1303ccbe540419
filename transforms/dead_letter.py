"""Dead letters: one record shape for every stage, and its file and Pub/Sub forms.

A message that cannot be read, parsed, mapped or delivered becomes a
:class:`DeadLetter` that keeps the original message. It is written as a JSON line
(bounded runs) or published to a dead-letter topic with the original bytes as data
(streaming runs); both forms are read back by the job once the cause is fixed
(``--input_format dead_letter`` for files, the job's usual format for a subscription on
the topic).
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import json
import logging
from collections.abc import Iterable, Mapping

from transforms.exposure import RawMessage

_LOGGER = logging.getLogger(__name__)

STAGES = ("read", "parse", "map", "deliver")
# The tag of every step's dead-letter output.
DEAD_LETTER_TAG = "dead_letter"
MAX_REASON_BYTES = 1000
# Attributes the job sets on a dead-letter message; ignored when it is read back.
DEAD_LETTER_ATTRIBUTES = ("stage", "reason", "status", "failed_at")
MASK = "***"


@dataclasses.dataclass(frozen=True, slots=True)
class DeadLetter:
    """A rejected message with why, where and when it was rejected."""

    message: RawMessage
    stage: str
    reason: str
    status: int | None = None
    failed_at: str = ""

    def __post_init__(self) -> None:
        if self.stage not in STAGES:
            raise ValueError(f"unknown dead-letter stage {self.stage!r}")


def make_dead_letter(
    message: RawMessage,
    stage: str,
    reason: str,
    status: int | None = None,
    *,
    secrets: Iterable[str] = (),
    now: datetime.datetime | None = None,
) -> DeadLetter:
    """Builds a dead letter whose reason is cleaned of ``secrets`` and cut to size."""
    return DeadLetter(
        message=message,
        stage=stage,
        reason=clean_reason(reason, secrets),
        status=status,
        failed_at=format_time(now or datetime.datetime.now(datetime.timezone.utc)),
    )


def clean_reason(reason: str, secrets: Iterable[str] = ()) -> str:
    """Masks every secret in ``reason`` and cuts it to 1,000 UTF-8 bytes."""
    for secret in secrets:
        if secret:
            reason = reason.replace(secret, MASK)
    # "replace" turns a lone surrogate (from a decoder's error text) into "?", so that
    # the reason is always writable as UTF-8.
    encoded = reason.encode("utf-8", errors="replace")
    # Cutting may split the last character; "ignore" drops its partial bytes.
    return encoded[:MAX_REASON_BYTES].decode("utf-8", errors="ignore")


def format_time(moment: datetime.datetime) -> str:
    """RFC 3339 UTC with milliseconds, e.g. ``2026-12-04T16:41:00.123Z``."""
    utc = moment.astimezone(datetime.timezone.utc)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def to_record(dead_letter: DeadLetter) -> dict:
    """The contract's record: payload, payload_encoding, [attributes], stage, ..."""
    message = dead_letter.message
    payload, encoding = render_payload(message)
    record: dict = {"payload": payload, "payload_encoding": encoding}
    if message.attributes:
        record["attributes"] = dict(message.attributes)
    record.update(
        stage=dead_letter.stage,
        reason=dead_letter.reason,
        status=dead_letter.status,
        failed_at=dead_letter.failed_at,
    )
    return record


def to_json_line(dead_letter: DeadLetter) -> str:
    return json.dumps(to_record(dead_letter), ensure_ascii=False, sort_keys=False)


def render_payload(message: RawMessage) -> tuple[object, str]:
    """The payload as the record shows it, and the name of that encoding."""
    if message.payload_encoding == "json":
        return json.loads(message.payload), "json"
    if message.payload_encoding == "path":
        return message.payload.decode("utf-8", errors="replace"), "path"
    try:
        return message.payload.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        return base64.b64encode(message.payload).decode("ascii"), "base64"


def to_pubsub_parts(dead_letter: DeadLetter) -> tuple[bytes, dict[str, str]]:
    """Data and attributes of the dead-letter topic's message.

    The data is the original bytes; the original attributes are kept, and ``stage``,
    ``reason``, ``status`` (empty when there was no HTTP answer) and ``failed_at`` are
    set over any of the same name.
    """
    attributes = dict(dead_letter.message.attributes or {})
    attributes.update(
        stage=dead_letter.stage,
        reason=dead_letter.reason,
        status="" if dead_letter.status is None else str(dead_letter.status),
        failed_at=dead_letter.failed_at,
    )
    return dead_letter.message.payload, attributes


def without_dead_letter_attributes(
    attributes: Mapping[str, str] | None,
) -> dict[str, str] | None:
    """A message's attributes less those a dead letter set (ignored on input)."""
    if not attributes:
        return None
    kept = {k: v for k, v in attributes.items() if k not in DEAD_LETTER_ATTRIBUTES}
    return kept or None


class InvalidDeadLetterRecord(ValueError):
    """A line of a dead-letter file that is not a dead-letter record."""


def message_from_record_line(line: bytes) -> RawMessage:
    """Reads one line of a dead-letter file back into the message it kept.

    Raises:
      InvalidDeadLetterRecord: the line is not a dead-letter record.
    """
    try:
        record = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as error:
        raise InvalidDeadLetterRecord(f"not a dead-letter record: {error}") from None
    if not isinstance(record, dict) or "payload" not in record:
        raise InvalidDeadLetterRecord("not a dead-letter record: no payload field")
    payload, encoding = record["payload"], record.get("payload_encoding", "utf-8")
    attributes = record.get("attributes")
    if attributes is not None and not isinstance(attributes, dict):
        raise InvalidDeadLetterRecord(
            "not a dead-letter record: attributes not an object"
        )
    attributes = without_dead_letter_attributes(attributes)
    if encoding == "json":
        data = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        return RawMessage(data, attributes, "json")
    if not isinstance(payload, str):
        raise InvalidDeadLetterRecord(
            f"not a dead-letter record: {encoding} payload is not a string"
        )
    if encoding == "base64":
        try:
            return RawMessage(base64.b64decode(payload, validate=True), attributes)
        except ValueError:
            raise InvalidDeadLetterRecord("payload is not valid base64") from None
    if encoding == "path":
        return RawMessage(payload.encode("utf-8"), attributes, "path")
    if encoding == "utf-8":
        return RawMessage(payload.encode("utf-8"), attributes)
    raise InvalidDeadLetterRecord(f"unknown payload_encoding {encoding!r}")

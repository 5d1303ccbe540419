"""Bad input never stops the job: the corpus, a pipeline over it, and property tests.

Every message either becomes events that satisfy Amplitude's id rules or leaves as a
dead letter (stage ``parse`` or ``map``) with a reason that names the cause; nothing
else ever comes out of parsing and mapping.
"""

from __future__ import annotations

import json
import random
import re

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing import test_pipeline
from apache_beam.testing.util import BeamAssertException, assert_that
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devtools.amplitude_server import validate_events
from pipeline.graph import DeliverExposures
from pipeline.options import JobConfig, resolve
from tests.corpus.bad_inputs import BAD, GOOD, avro_datum
from transforms import amplitude
from transforms.dead_letter import (
    DeadLetter,
    make_dead_letter,
    message_from_record_line,
    to_json_line,
    to_record,
)
from transforms.events import RESERVED_IDS, MappingSettings, to_amplitude_events
from transforms.exposure import (
    MAX_TIMESTAMP_MS,
    MIN_TIMESTAMP_MS,
    InvalidExposure,
    RawMessage,
    parse_message,
)

FORMATS = ("json", "avro")
INSERT_ID = re.compile(r"[0-9a-f]{32}")


def _message(case) -> RawMessage:
    return RawMessage(case.payload, case.attributes)


def _key(input_format: str, message: RawMessage) -> tuple:
    attributes = tuple(sorted((message.attributes or {}).items()))
    return input_format, message.payload, attributes


def outcome(message: RawMessage, input_format: str, mapping: MappingSettings):
    """``("events", events)``, or ``(stage, reason)`` of the InvalidExposure."""
    try:
        exposure = parse_message(message, input_format)
    except InvalidExposure as error:
        return "parse", error.reason
    try:
        return "events", to_amplitude_events(exposure, mapping)
    except InvalidExposure as error:
        return "map", error.reason


# The corpus, case by case


def test_corpus_is_large_and_distinct():
    ids = [case.case_id for case in BAD + GOOD]
    assert len(BAD) >= 40
    assert len(set(ids)) == len(ids)
    keys = [_key(case.input_format, _message(case)) for case in BAD + GOOD]
    assert len(set(keys)) == len(keys)
    for case in BAD:
        assert case.input_format in FORMATS
        assert case.stage in ("parse", "map")
        assert case.reason.strip()


@pytest.mark.parametrize(
    "case",
    [pytest.param(case, id=case.case_id) for case in BAD],
)
def test_bad_message_is_refused_with_its_reason(case):
    stage, result = outcome(_message(case), case.input_format, MappingSettings())
    assert (stage, case.reason in str(result)) == (case.stage, True), result


@pytest.mark.parametrize(
    "case",
    [pytest.param(case, id=case.case_id) for case in GOOD],
)
def test_borderline_message_becomes_the_exact_event(case):
    assert outcome(_message(case), case.input_format, MappingSettings()) == (
        "events",
        case.events,
    )


# The whole corpus through one pipeline


def preview_config(input_format: str, *flags: str) -> JobConfig:
    options = PipelineOptions(
        ["--input_path", "corpus-*.jsonl", "--input_format", input_format, *flags]
    )
    config = resolve(options, environ={})
    assert config.preview
    return config


def deliver_by_format(pipeline, messages_by_format: dict, *flags: str) -> tuple:
    """Runs each format's messages through its own DeliverExposures.

    Returns the preview bodies and the dead letters as ``(format, DeadLetter)``.
    """
    bodies, dead_letters = [], []
    for input_format, messages in messages_by_format.items():
        outputs = (
            pipeline
            | f"Create{input_format.title()}" >> beam.Create(messages)
            | f"Deliver{input_format.title()}"
            >> DeliverExposures(preview_config(input_format, *flags))
        )
        bodies.append(outputs["delivered"])
        dead_letters.append(
            outputs["dead_letters"]
            | f"Tag{input_format.title()}"
            >> beam.Map(lambda letter, fmt=input_format: (fmt, letter))
        )
    return (
        bodies | "AllBodies" >> beam.Flatten(),
        dead_letters | "AllDeadLetters" >> beam.Flatten(),
    )


def _events_of(bodies: list[str]) -> list[dict]:
    events = []
    for text in bodies:
        body = json.loads(text)
        if body["api_key"] != "***":
            raise BeamAssertException("a preview body shows a key")
        events += body["events"]
    return events


def _canonical(events: list[dict]) -> list[str]:
    return sorted(json.dumps(event, sort_keys=True) for event in events)


def _record_keeps_message(letter: DeadLetter) -> bool:
    """The dead letter's JSON line reads back into the very same message."""
    line = to_json_line(letter).encode("utf-8")
    back = message_from_record_line(line)
    record = to_record(letter)
    try:
        letter.message.payload.decode("utf-8")
        encoding = "utf-8"
    except UnicodeDecodeError:
        encoding = "base64"
    return (
        back.payload == letter.message.payload
        and back.attributes == letter.message.attributes
        and record["payload_encoding"] == encoding
        and record["status"] is None
        and len(record["reason"].encode("utf-8")) <= 1000
    )


def test_whole_corpus_in_one_pipeline():
    good = GOOD
    expected = {_key(c.input_format, _message(c)): c for c in BAD}
    messages_by_format = {
        fmt: [_message(c) for c in BAD + good if c.input_format == fmt]
        for fmt in FORMATS
    }

    def check_dead_letters(actual):
        found = {}
        for input_format, letter in actual:
            key = _key(input_format, letter.message)
            if key not in expected or key in found:
                raise BeamAssertException(
                    f"unexpected dead letter ({letter.stage}): {letter.reason}"
                )
            found[key] = letter
        missing = [expected[k].case_id for k in expected if k not in found]
        if missing:
            raise BeamAssertException(f"no dead letter for {missing}")
        wrong = []
        for key, letter in found.items():
            case = expected[key]
            reason_ok = case.reason in letter.reason
            if letter.stage != case.stage or not reason_ok or not letter.reason:
                wrong.append((case.case_id, letter.stage, letter.reason))
            if not _record_keeps_message(letter):
                wrong.append((case.case_id, "record", to_json_line(letter)[:200]))
        if wrong:
            raise BeamAssertException(f"wrong dead letters: {wrong}")

    def check_events(actual):
        events = _events_of(actual)
        want = [event for case in good for event in case.events]
        got, wanted = _canonical(events), _canonical(want)
        if got != wanted:
            unexpected = sorted(set(got) - set(wanted))[:3]
            missing = sorted(set(wanted) - set(got))[:3]
            raise BeamAssertException(
                f"{len(got)} events came out, {len(wanted)} expected; unexpected "
                f"{unexpected}; missing {missing}"
            )

    with test_pipeline.TestPipeline(runner="FnApiRunner") as pipeline:
        bodies, dead_letters = deliver_by_format(pipeline, messages_by_format)
        assert_that(dead_letters, check_dead_letters, label="CheckDeadLetters")
        assert_that(bodies, check_events, label="CheckEvents")


# Property tests

_MODES = ("identify", "experiment", "event")
MAPPINGS = [
    MappingSettings(),
    MappingSettings(event_modes=_MODES, visitor_code_as_user_id=True),
    MappingSettings(event_modes=("experiment",), exposure_keys="keys", min_id_length=8),
    MappingSettings(event_modes=("event", "identify"), min_id_length=1),
]


def check_outcome(message: RawMessage, input_format: str, mapping: MappingSettings):
    """Events that Amplitude accepts, or a dead letter with a reason; nothing else."""
    stage, result = outcome(message, input_format, mapping)
    if stage != "events":
        assert isinstance(result, str) and result.strip(), (stage, result)
        letter = make_dead_letter(message, stage, result)
        back = message_from_record_line(to_json_line(letter).encode("utf-8"))
        assert back.payload == message.payload
        return None
    events = result
    assert len(events) == len(mapping.event_modes)
    assert len({event["insert_id"] for event in events}) == len(events)
    assert validate_events(events, mapping.min_id_length) == {}
    for event in events:
        for name in ("device_id", "user_id"):
            if name == "user_id" and name not in event:
                continue
            value = event[name]
            assert isinstance(value, str)
            assert mapping.min_id_length <= len(value) <= 1024, (name, value)
            assert value.lower() not in RESERVED_IDS, (name, value)
        time_ms = event["time"]
        assert type(time_ms) is int and MIN_TIMESTAMP_MS <= time_ms <= MAX_TIMESTAMP_MS
        assert INSERT_ID.fullmatch(event["insert_id"])
        if "session_id" in event:
            assert type(event["session_id"]) is int and event["session_id"] >= -1
        assert isinstance(event["event_type"], str) and event["event_type"]
    body = amplitude.request_body(events, "key", mapping.min_id_length)
    assert json.loads(amplitude.encode_body(body))["events"] == events
    return events


_RESERVED = st.sampled_from(sorted(RESERVED_IDS)).flatmap(
    lambda value: st.sampled_from([value, value.upper(), value.title()])
)
_SURROGATES = st.sampled_from(["\ud800", "kam-\udfff-visitor", "\udbff\udc00x"])
_DIGITS = st.tuples(
    st.integers(0, 40), st.from_regex(r"[0-9]{1,22}", fullmatch=True)
).map(lambda padded: "0" * padded[0] + padded[1])
_RFC3339 = st.from_regex(
    r"[0-9]{4}-[01][0-9]-[0-3][0-9][Tt ][0-2][0-9]:[0-5][0-9]:[0-6][0-9]"
    r"(\.[0-9]{1,12})?([Zz]|[+-][0-2][0-9]:[0-5][0-9])?",
    fullmatch=True,
)
_VALID_RFC3339 = st.from_regex(
    r"(19[89][0-9]|2[01][0-9]{2})-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])[T ]"
    r"([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,12})?"
    r"(Z|[+-](0[0-9]|1[0-3]):[0-5][0-9])",
    fullmatch=True,
)
_JUNK = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=10)
    | _SURROGATES,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)
_ANYTHING = st.one_of(
    _JUNK,
    _DIGITS,
    _RFC3339,
    _RESERVED,
    st.integers(min_value=-(2**70), max_value=2**70),
    st.integers(1019, 1030).map(lambda n: "d" * n),
    st.integers(250, 260).map(lambda n: "v" * n),
)


def _mostly(valid, other=_ANYTHING):
    """Values of ``valid`` seven times in ten, else ``other``."""
    return st.integers(0, 9).flatmap(lambda n: valid if n < 7 else other)


_MIN_MS, _MAX_MS = MIN_TIMESTAMP_MS, MAX_TIMESTAMP_MS
_VISITOR_CODES = st.one_of(
    st.from_regex(r"[A-Za-z0-9-]{5,40}", fullmatch=True),
    st.text(min_size=5, max_size=30),
    st.from_regex(r"[a-z0-9]{1,4}", fullmatch=True),
    _RESERVED,
)
_POSITIVE_IDS = st.integers(1, 2**63 - 1)
_TIMES = st.integers(_MIN_MS, _MAX_MS) | st.sampled_from(
    [_MIN_MS - 1, _MIN_MS, _MAX_MS, _MAX_MS + 1]
)
_OPTIONAL_IDS = st.from_regex(r"[a-z0-9-]{5,20}", fullmatch=True)
REQUIRED_FIELDS = {
    "visitor_code": _mostly(_VISITOR_CODES),
    "experiment_id": _mostly(_POSITIVE_IDS | _POSITIVE_IDS.map(str)),
    "variation_id": _mostly(st.integers(0, 2**63 - 1) | _DIGITS),
    "timestamp": _mostly(_TIMES | _TIMES.map(str) | _VALID_RFC3339),
}
OPTIONAL_FIELDS = {
    "cross_device_id": _mostly(_OPTIONAL_IDS | st.integers(10_000, 2**70)),
    "amplitude_device_id": _mostly(_OPTIONAL_IDS),
    "amplitude_session_id": _mostly(st.integers(-1, 2**63 - 1) | st.just("-1")),
    "experiment_key": _mostly(st.text(max_size=10)),
    "variation_key": _mostly(st.text(max_size=10)),
    "extra": _JUNK,
}


@st.composite
def json_messages(draw) -> bytes:
    """A near-valid exposure as JSON text, sometimes damaged on the way."""
    fields = draw(st.fixed_dictionaries(REQUIRED_FIELDS, optional=OPTIONAL_FIELDS))
    dropped = draw(st.sampled_from([None] * 8 + sorted(REQUIRED_FIELDS)))
    fields.pop(dropped, None)
    text = json.dumps(fields, ensure_ascii=draw(st.booleans()))
    data = text.encode("utf-8", "surrogatepass")
    damage = draw(st.sampled_from(["none"] * 6 + ["cut", "byte", "bom", "latin1"]))
    if damage == "cut":
        data = data[: draw(st.integers(0, len(data) - 1))]
    elif damage == "byte":
        at = draw(st.integers(0, len(data) - 1))
        data = data[:at] + bytes([draw(st.integers(0, 255))]) + data[at + 1 :]
    elif damage == "bom":
        data = b"\xef\xbb\xbf" + data
    elif damage == "latin1":
        data = text.encode("latin-1", "replace")
    return data


_LONGS = st.integers(min_value=-(2**63), max_value=2**63 - 1)
_OPTIONAL_TEXT = st.none() | _mostly(_OPTIONAL_IDS, st.text(max_size=12) | _RESERVED)
AVRO_RECORDS = st.fixed_dictionaries(
    {
        "visitor_code": _mostly(_VISITOR_CODES, st.text(max_size=6) | _RESERVED),
        "experiment_id": _mostly(_POSITIVE_IDS, _LONGS | st.integers(-2, 2)),
        "variation_id": _mostly(_POSITIVE_IDS, _LONGS | st.integers(-2, 2)),
        "timestamp": _mostly(_TIMES, _LONGS),
        "cross_device_id": _OPTIONAL_TEXT,
        "amplitude_device_id": _OPTIONAL_TEXT,
        "amplitude_session_id": st.none() | _LONGS | st.integers(-3, 3),
        "experiment_key": st.none() | st.text(max_size=8),
        "variation_key": st.none() | st.text(max_size=8),
    }
)


@st.composite
def avro_messages(draw) -> bytes:
    """A datum of the exposure schema with any values, sometimes damaged."""
    data = avro_datum(**draw(AVRO_RECORDS))
    damage = draw(st.sampled_from(["none"] * 6 + ["cut", "byte", "append"]))
    if damage == "cut":
        data = data[: draw(st.integers(0, len(data) - 1))]
    elif damage == "byte":
        at = draw(st.integers(0, len(data) - 1))
        data = data[:at] + bytes([draw(st.integers(0, 255))]) + data[at + 1 :]
    elif damage == "append":
        data += draw(st.binary(min_size=1, max_size=4))
    return data


_PROPERTY_SETTINGS = settings(
    max_examples=500,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
_ATTRIBUTES = st.none() | st.just({"googclient_schemaencoding": "JSON"})


@_PROPERTY_SETTINGS
@given(
    data=st.binary(max_size=300),
    input_format=st.sampled_from(FORMATS),
    attributes=_ATTRIBUTES,
    mapping=st.sampled_from(MAPPINGS),
)
def test_any_bytes_become_valid_events_or_a_reason(
    data, input_format, attributes, mapping
):
    check_outcome(RawMessage(data, attributes), input_format, mapping)


@_PROPERTY_SETTINGS
@given(data=json_messages(), mapping=st.sampled_from(MAPPINGS))
def test_near_valid_json_becomes_valid_events_or_a_reason(data, mapping):
    check_outcome(RawMessage(data), "json", mapping)


@_PROPERTY_SETTINGS
@given(data=avro_messages(), mapping=st.sampled_from(MAPPINGS))
def test_near_valid_avro_becomes_valid_events_or_a_reason(data, mapping):
    check_outcome(RawMessage(data), "avro", mapping)


def test_property_strategies_reach_both_outcomes():
    """The near-valid strategies yield events as well as dead letters."""
    outcomes = {"json": set(), "avro": set()}

    @settings(max_examples=200, deadline=None, database=None, derandomize=True)
    @given(json_data=json_messages(), avro_data=avro_messages())
    def collect(json_data, avro_data):
        outcomes["json"].add(outcome(RawMessage(json_data), "json", MAPPINGS[0])[0])
        outcomes["avro"].add(outcome(RawMessage(avro_data), "avro", MAPPINGS[0])[0])

    collect()
    assert outcomes == {fmt: {"events", "parse", "map"} for fmt in FORMATS}


# Random payloads through one pipeline

_VALID = {
    "visitor_code": "rand-visitor-0",
    "experiment_id": 1001,
    "variation_id": 2,
    "timestamp": 1_796_402_460_000,
}
_FIELD_MENU = {
    "visitor_code": ["v", "null", "", 42, ["x"], "ok-visitor", "é" * 256],
    "experiment_id": [0, -1, "12a", 1.5, True, "007", 2**64, None],
    "variation_id": [-1, 0, "3", {}, False],
    "timestamp": [1_796_402_460, "2026-12-04T16:41:00Z", "2026-12-04", 1e400, "9" * 14],
    "cross_device_id": [0, "abcd", "customer-1", 12345678, [1], True],
    "amplitude_device_id": ["dev", "device-0001", 7, "NONE"],
    "amplitude_session_id": [-1, -2, "x", 1_796_402_126_005],
}


def random_payload(rng: random.Random, index: int) -> tuple[str, bytes]:
    """One random message, valid or not, and its format."""
    kind = rng.choice(["bytes", "json", "json", "mutated", "avro", "avro_damaged"])
    fields = dict(_VALID, visitor_code=f"rand-visitor-{index:04d}")
    if kind == "bytes":
        return rng.choice(FORMATS), rng.randbytes(rng.randint(0, 80))
    if kind in ("json", "mutated"):
        for name in rng.sample(sorted(_FIELD_MENU), rng.randint(0, 2)):
            fields[name] = rng.choice(_FIELD_MENU[name])
        data = json.dumps(fields).encode("utf-8")
        if kind == "mutated":
            at = rng.randrange(len(data))
            data = rng.choice(
                [data[:at], data[:at] + rng.randbytes(1) + data[at + 1 :]]
            )
        return "json", data
    record = dict(fields)
    if rng.random() < 0.3:
        record["timestamp"] = rng.choice([0, -5, 10**15, 1_796_402_460])
    if rng.random() < 0.3:
        record["cross_device_id"] = rng.choice(["abc", "customer-77", "null"])
    data = avro_datum(**record)
    if kind == "avro_damaged":
        data = rng.choice([data[: rng.randrange(len(data))], data + b"\x01"])
    return "avro", data


def test_random_payloads_in_one_pipeline_are_all_accounted_for():
    rng = random.Random(20261204)
    payloads = [random_payload(rng, index) for index in range(300)]
    modes = ("identify", "experiment")
    mapping = MappingSettings(event_modes=modes)
    predicted_valid = 0
    for input_format, data in payloads:
        events = check_outcome(RawMessage(data), input_format, mapping)
        predicted_valid += events is not None
    assert 30 < predicted_valid < 270
    messages_by_format = {
        fmt: [RawMessage(data) for f, data in payloads if f == fmt] for fmt in FORMATS
    }

    def check(actual):
        # One element per outcome: events (one per mode) or a dead letter.
        events = [item for kind, item in actual if kind == "event"]
        letters = [item for kind, item in actual if kind == "dead_letter"]
        sources = len(events) / len(modes)
        if sources + len(letters) != len(payloads) or sources != predicted_valid:
            raise BeamAssertException(
                f"{len(events)} events and {len(letters)} dead letters for "
                f"{len(payloads)} messages, {predicted_valid} of them valid"
            )
        for letter in letters:
            if letter.stage not in ("parse", "map") or not letter.reason.strip():
                raise BeamAssertException(f"bad dead letter {letter}")
        problems = validate_events(events, 5)
        if problems:
            raise BeamAssertException(f"Amplitude would refuse events: {problems}")

    with test_pipeline.TestPipeline(runner="FnApiRunner") as pipeline:
        bodies, dead_letters = deliver_by_format(
            pipeline, messages_by_format, "--event_mode", ",".join(modes)
        )
        outcomes = (
            bodies
            | "BodyEvents" >> beam.FlatMap(lambda text: json.loads(text)["events"])
            | "AsEvents" >> beam.Map(lambda event: ("event", event)),
            dead_letters
            | "AsDeadLetters" >> beam.Map(lambda tagged: ("dead_letter", tagged[1])),
        ) | "AllOutcomes" >> beam.Flatten()
        assert_that(outcomes, check, label="CheckAccounting")

"""Tests of the mapping of exposures to Amplitude events, per mode, and the id rules."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from transforms.events import (
    RESERVED_IDS,
    MappingSettings,
    OutboundEvent,
    insert_id,
    parse_event_modes,
    to_amplitude_events,
)
from transforms.exposure import Exposure, InvalidExposure, RawMessage, parse_message

REPO = Path(__file__).resolve().parents[2]
VISITOR = "mcrecdfteajw8r33"
TIME_MS = 1796402520302
DEVICE = "e1557a71-007d-4b43-a590-8d4ab3d2c82a"
USER = "customer-7869795"
SESSION = 1796402126005

MINIMAL = Exposure(
    visitor_code=VISITOR, experiment_id=241402, variation_id=912361, time_ms=TIME_MS
)
FULL = Exposure(
    visitor_code=VISITOR,
    experiment_id=241402,
    variation_id=912361,
    time_ms=TIME_MS,
    cross_device_id=USER,
    amplitude_device_id=DEVICE,
    amplitude_session_id=SESSION,
    experiment_key="pricing-page-layout",
    variation_key="detailed",
)
KAM_SET = {
    "$set": {
        "KAM_EXPERIMENT_241402": "KAM_VARIATION_912361",
        "KAM_VISITOR_CODE": VISITOR,
    }
}
HEX32 = re.compile(r"^[0-9a-f]{32}$")
RESERVED_REASON = (
    "{field} (from {source}) is a value Amplitude rejects as an id (reserved values "
    "such as null, none, 0, -1, anonymous, undefined)"
)
SHORT_REASON = (
    "{field} (from {source}) has {length} characters; Amplitude requires at least "
    "{minimum} (--min_id_length)"
)


def events(exposure: Exposure, *modes: str, **options: object) -> list[dict]:
    return to_amplitude_events(
        exposure, MappingSettings(event_modes=modes or ("identify",), **options)
    )


def reason(exposure: Exposure, **options: object) -> str:
    with pytest.raises(InvalidExposure) as caught:
        events(exposure, **options)
    return caught.value.reason


def with_fields(exposure: Exposure = MINIMAL, **changes: object) -> Exposure:
    return dataclasses.replace(exposure, **changes)


# --- identify ---------------------------------------------------------------------


def test_identify_minimal() -> None:
    assert events(MINIMAL) == [
        {
            "event_type": "$identify",
            "device_id": VISITOR,
            "time": TIME_MS,
            "user_properties": KAM_SET,
            "insert_id": insert_id(MINIMAL),
        }
    ]


def test_identify_is_the_default_mode() -> None:
    assert to_amplitude_events(MINIMAL, MappingSettings()) == events(
        MINIMAL, "identify"
    )


def test_identify_full() -> None:
    assert events(FULL) == [
        {
            "event_type": "$identify",
            "device_id": DEVICE,
            "user_id": USER,
            "session_id": SESSION,
            "time": TIME_MS,
            "user_properties": KAM_SET,
            "insert_id": insert_id(FULL, "identify"),
        }
    ]


def test_identify_variation_zero() -> None:
    exposure = with_fields(experiment_id=7, variation_id=0)
    assert events(exposure)[0]["user_properties"] == {
        "$set": {"KAM_EXPERIMENT_7": "KAM_VARIATION_0", "KAM_VISITOR_CODE": VISITOR}
    }


def test_visitor_code_as_user_id_without_cross_device_id() -> None:
    assert events(MINIMAL, visitor_code_as_user_id=True) == [
        {
            "event_type": "$identify",
            "device_id": VISITOR,
            "user_id": VISITOR,
            "time": TIME_MS,
            "user_properties": KAM_SET,
            "insert_id": insert_id(MINIMAL),
        }
    ]


def test_cross_device_id_wins_over_visitor_code_as_user_id() -> None:
    exposure = with_fields(cross_device_id=USER)
    assert events(exposure, visitor_code_as_user_id=True)[0]["user_id"] == USER


def test_no_user_id_without_cross_device_id_by_default() -> None:
    assert "user_id" not in events(MINIMAL, "identify", "experiment", "event")[0]


def test_amplitude_device_id_wins_over_visitor_code() -> None:
    exposure = with_fields(amplitude_device_id=DEVICE)
    assert events(exposure)[0]["device_id"] == DEVICE


@pytest.mark.parametrize("session_id", [-1, 0, SESSION])
def test_session_id_passes_through(session_id: int) -> None:
    exposure = with_fields(amplitude_session_id=session_id)
    assert events(exposure)[0]["session_id"] == session_id


# --- experiment -------------------------------------------------------------------


def test_experiment_minimal() -> None:
    assert events(MINIMAL, "experiment") == [
        {
            "event_type": "$exposure",
            "device_id": VISITOR,
            "time": TIME_MS,
            "event_properties": {
                "flag_key": "KAM_EXPERIMENT_241402",
                "variant": "KAM_VARIATION_912361",
            },
            "insert_id": insert_id(MINIMAL, "experiment"),
        }
    ]


def test_experiment_full_with_ids() -> None:
    assert events(FULL, "experiment") == [
        {
            "event_type": "$exposure",
            "device_id": DEVICE,
            "user_id": USER,
            "session_id": SESSION,
            "time": TIME_MS,
            "event_properties": {
                "flag_key": "KAM_EXPERIMENT_241402",
                "variant": "KAM_VARIATION_912361",
            },
            "insert_id": insert_id(FULL, "experiment"),
        }
    ]


def test_experiment_with_keys_uses_the_bare_keys() -> None:
    assert events(FULL, "experiment", exposure_keys="keys") == [
        {
            "event_type": "$exposure",
            "device_id": DEVICE,
            "user_id": USER,
            "session_id": SESSION,
            "time": TIME_MS,
            "event_properties": {
                "flag_key": "pricing-page-layout",
                "variant": "detailed",
            },
            "insert_id": insert_id(FULL, "experiment"),
        }
    ]


@pytest.mark.parametrize(
    "keys",
    [
        {"experiment_key": "pricing-page-layout"},
        {"variation_key": "detailed"},
        {},
    ],
)
def test_experiment_with_keys_falls_back_to_ids_unless_both_keys(keys: dict) -> None:
    exposure = with_fields(**keys)
    assert events(exposure, "experiment", exposure_keys="keys")[0][
        "event_properties"
    ] == {"flag_key": "KAM_EXPERIMENT_241402", "variant": "KAM_VARIATION_912361"}


# --- event ------------------------------------------------------------------------


def test_event_minimal() -> None:
    assert events(MINIMAL, "event") == [
        {
            "event_type": "Kameleoon Exposure",
            "device_id": VISITOR,
            "time": TIME_MS,
            "event_properties": {"experiment_id": 241402, "variation_id": 912361},
            "user_properties": KAM_SET,
            "insert_id": insert_id(MINIMAL, "event"),
        }
    ]


def test_event_full_with_custom_type() -> None:
    assert events(FULL, "event", exposure_event_type="AB Test Exposure") == [
        {
            "event_type": "AB Test Exposure",
            "device_id": DEVICE,
            "user_id": USER,
            "session_id": SESSION,
            "time": TIME_MS,
            "event_properties": {
                "experiment_id": 241402,
                "variation_id": 912361,
                "experiment_key": "pricing-page-layout",
                "variation_key": "detailed",
            },
            "user_properties": KAM_SET,
            "insert_id": insert_id(FULL, "event"),
        }
    ]


def test_event_with_one_key() -> None:
    exposure = with_fields(variation_key="detailed")
    assert events(exposure, "event")[0]["event_properties"] == {
        "experiment_id": 241402,
        "variation_id": 912361,
        "variation_key": "detailed",
    }


def test_exposure_keys_does_not_change_the_event_mode() -> None:
    assert events(FULL, "event", exposure_keys="keys") == events(FULL, "event")


def test_identify_ignores_exposure_keys_and_event_type() -> None:
    assert events(
        FULL, "identify", exposure_keys="keys", exposure_event_type="Other"
    ) == events(FULL, "identify")


# --- several modes ----------------------------------------------------------------


def test_modes_combine_in_order() -> None:
    result = events(FULL, "identify", "experiment", "event")
    assert result == [
        events(FULL, "identify")[0],
        events(FULL, "experiment")[0],
        events(FULL, "event")[0],
    ]
    assert [event["event_type"] for event in result] == [
        "$identify",
        "$exposure",
        "Kameleoon Exposure",
    ]


def test_modes_keep_the_given_order() -> None:
    result = events(MINIMAL, "event", "identify")
    assert [event["event_type"] for event in result] == [
        "Kameleoon Exposure",
        "$identify",
    ]
    result = events(MINIMAL, "experiment", "event", "identify")
    assert [event["event_type"] for event in result] == [
        "$exposure",
        "Kameleoon Exposure",
        "$identify",
    ]


def test_same_identity_in_every_mode() -> None:
    identity_fields = ("device_id", "user_id", "session_id", "time")
    result = events(FULL, "identify", "experiment", "event")
    identities = [{k: event[k] for k in identity_fields} for event in result]
    assert (
        identities
        == [
            {
                "device_id": DEVICE,
                "user_id": USER,
                "session_id": SESSION,
                "time": TIME_MS,
            }
        ]
        * 3
    )
    result = events(
        MINIMAL, "identify", "experiment", "event", visitor_code_as_user_id=True
    )
    assert [(e["device_id"], e["user_id"]) for e in result] == [(VISITOR, VISITOR)] * 3


def test_events_are_new_dicts_each_call() -> None:
    first = events(FULL, "identify", "event")
    first[0]["user_properties"]["$set"]["x"] = "y"
    first[1]["event_properties"]["x"] = "y"
    assert events(FULL, "identify", "event") == [
        events(FULL, "identify")[0],
        events(FULL, "event")[0],
    ]
    assert "x" not in events(FULL, "identify")[0]["user_properties"]["$set"]


# --- insert_id --------------------------------------------------------------------

MODES = ("identify", "experiment", "event")


@pytest.mark.parametrize("mode", MODES)
def test_insert_id_is_32_hex_chars(mode: str) -> None:
    assert HEX32.match(insert_id(FULL, mode))
    assert HEX32.match(events(FULL, mode)[0]["insert_id"])


@pytest.mark.parametrize("mode", MODES)
def test_insert_id_is_stable_for_equal_exposures(mode: str) -> None:
    twin = Exposure(**dataclasses.asdict(FULL))
    assert twin is not FULL
    assert insert_id(twin, mode) == insert_id(FULL, mode)
    assert events(twin, mode) == events(FULL, mode)


def test_insert_id_is_the_same_in_another_process() -> None:
    script = (
        "import json, sys\n"
        "from transforms.events import insert_id\n"
        "from transforms.exposure import Exposure\n"
        "exposure = Exposure(**json.loads(sys.argv[1]))\n"
        "print(json.dumps([insert_id(exposure, m) for m in sys.argv[2:]]))\n"
    )
    exposure = with_fields(FULL, visitor_code="vïsitor-€-😀")
    env = {**os.environ, "PYTHONHASHSEED": "12345", "PYTHONPATH": str(REPO)}
    output = subprocess.run(
        [
            sys.executable,
            "-c",
            script,
            json.dumps(dataclasses.asdict(exposure)),
            *MODES,
        ],
        capture_output=True,
        check=True,
        cwd=REPO,
        env=env,
        text=True,
    ).stdout
    assert json.loads(output) == [insert_id(exposure, mode) for mode in MODES]


def test_insert_ids_of_the_modes_never_collide() -> None:
    ids = [event["insert_id"] for event in events(FULL, *MODES)]
    assert len(set(ids)) == 3
    assert ids == [insert_id(FULL, mode) for mode in MODES]


@pytest.mark.parametrize(
    "changes",
    [
        {"visitor_code": VISITOR + "x"},
        {"visitor_code": VISITOR.upper()},
        {"experiment_id": 241403},
        {"variation_id": 912362},
        {"variation_id": 0},
        {"time_ms": TIME_MS + 1},
        # Fields moved between the key's parts give other ids too.
        {"experiment_id": 912361, "variation_id": 241402},
    ],
)
@pytest.mark.parametrize("mode", MODES)
def test_insert_id_changes_with_the_key_fields(changes: dict, mode: str) -> None:
    assert insert_id(with_fields(FULL, **changes), mode) != insert_id(FULL, mode)


def test_insert_id_key_parts_are_not_ambiguous() -> None:
    first = Exposure(
        visitor_code="abcde1", experiment_id=23, variation_id=4, time_ms=TIME_MS
    )
    second = Exposure(
        visitor_code="abcde", experiment_id=123, variation_id=4, time_ms=TIME_MS
    )
    assert insert_id(first) != insert_id(second)


@pytest.mark.parametrize(
    "changes",
    [
        {"cross_device_id": None},
        {"cross_device_id": "customer-1"},
        {"amplitude_device_id": None},
        {"amplitude_session_id": None},
        {"amplitude_session_id": -1},
        {"experiment_key": None, "variation_key": None},
        {"experiment_key": "other", "variation_key": "other"},
    ],
)
@pytest.mark.parametrize("mode", MODES)
def test_insert_id_ignores_the_other_fields(changes: dict, mode: str) -> None:
    assert insert_id(with_fields(FULL, **changes), mode) == insert_id(FULL, mode)


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"event_modes": ("identify", "experiment", "event")},
        {"event_modes": ("event", "identify")},
        {"event_modes": ("experiment", "identify"), "exposure_keys": "keys"},
        {"exposure_keys": "keys"},
        {"exposure_event_type": "Other Exposure"},
        {"visitor_code_as_user_id": True},
        {"min_id_length": 1},
    ],
)
def test_identify_insert_id_never_changes_with_the_options(options: dict) -> None:
    settings = MappingSettings(**options)
    result = to_amplitude_events(FULL, settings)
    [identify] = [event for event in result if event["event_type"] == "$identify"]
    assert identify["insert_id"] == insert_id(FULL)
    assert insert_id(FULL) == insert_id(FULL, "identify")


def test_exposure_keys_change_no_insert_id() -> None:
    with_ids = events(FULL, *MODES, exposure_keys="ids")
    with_keys = events(FULL, *MODES, exposure_keys="keys")
    assert [e["insert_id"] for e in with_ids] == [e["insert_id"] for e in with_keys]
    assert with_ids[1]["event_properties"] != with_keys[1]["event_properties"]


def test_event_type_changes_no_insert_id() -> None:
    assert (
        events(FULL, "event", exposure_event_type="A B")[0]["insert_id"]
        == (events(FULL, "event")[0]["insert_id"])
    )


# --- id rules ---------------------------------------------------------------------

CASES = (str.lower, str.upper, str.title)


@pytest.mark.parametrize("value", sorted(RESERVED_IDS))
@pytest.mark.parametrize("case", CASES)
def test_reserved_device_id_from_amplitude_device_id(value: str, case) -> None:
    exposure = with_fields(amplitude_device_id=case(value))
    expected = RESERVED_REASON.format(field="device_id", source="amplitude_device_id")
    assert reason(exposure) == expected
    assert reason(exposure, min_id_length=1) == expected


@pytest.mark.parametrize("value", sorted(RESERVED_IDS))
@pytest.mark.parametrize("case", CASES)
def test_reserved_user_id_from_cross_device_id(value: str, case) -> None:
    exposure = with_fields(cross_device_id=case(value))
    expected = RESERVED_REASON.format(field="user_id", source="cross_device_id")
    assert reason(exposure) == expected
    assert reason(exposure, min_id_length=1) == expected


@pytest.mark.parametrize("value", sorted(RESERVED_IDS))
def test_reserved_visitor_code_as_device_id(value: str) -> None:
    exposure = with_fields(visitor_code=value.upper())
    assert reason(exposure, min_id_length=1) == RESERVED_REASON.format(
        field="device_id", source="visitor_code"
    )


def test_reserved_values_are_those_of_the_reference() -> None:
    assert RESERVED_IDS == {
        "anonymous",
        "nil",
        "none",
        "null",
        "n/a",
        "na",
        "undefined",
        "unknown",
        '""',
        "00000000-0000-0000-0000-000000000000",
        "{}",
        "lmy47d",
        "0",
        "-1",
    }


@pytest.mark.parametrize(
    "value",
    ["nullx", "anonymous1", "none-of-these", "00000000-0000-0000-0000-000000000001"],
)
def test_near_reserved_ids_are_accepted(value: str) -> None:
    assert events(with_fields(amplitude_device_id=value))[0]["device_id"] == value
    assert events(with_fields(cross_device_id=value))[0]["user_id"] == value


def test_reserved_cross_device_id_from_an_integer() -> None:
    for number, expected in [(0, "0"), (-1, "-1")]:
        exposure = parse_message(
            RawMessage(
                json.dumps(
                    {
                        "visitor_code": VISITOR,
                        "experiment_id": 1,
                        "variation_id": 0,
                        "timestamp": TIME_MS,
                        "cross_device_id": number,
                    }
                ).encode()
            ),
            "json",
        )
        assert exposure.cross_device_id == expected
        assert reason(exposure) == RESERVED_REASON.format(
            field="user_id", source="cross_device_id"
        )


def test_reserved_visitor_code_as_user_id() -> None:
    exposure = with_fields(visitor_code="Undefined", amplitude_device_id=DEVICE)
    assert reason(exposure, visitor_code_as_user_id=True) == RESERVED_REASON.format(
        field="user_id", source="visitor_code"
    )
    assert events(exposure)[0]["device_id"] == DEVICE


@pytest.mark.parametrize(
    "field, changes, source",
    [
        ("device_id", {"amplitude_device_id": "dev1"}, "amplitude_device_id"),
        ("device_id", {"visitor_code": "abcd"}, "visitor_code"),
        ("user_id", {"cross_device_id": "cust"}, "cross_device_id"),
    ],
)
def test_four_character_ids_are_rejected(
    field: str, changes: dict, source: str
) -> None:
    assert reason(with_fields(**changes)) == SHORT_REASON.format(
        field=field, source=source, length=4, minimum=5
    )


def test_five_character_ids_are_accepted() -> None:
    exposure = with_fields(visitor_code="abcde", cross_device_id="cust1")
    assert [events(exposure)[0][k] for k in ("device_id", "user_id")] == [
        "abcde",
        "cust1",
    ]
    exposure = with_fields(amplitude_device_id="dev12")
    assert events(exposure)[0]["device_id"] == "dev12"


def test_short_visitor_code_used_as_device_id() -> None:
    exposure = with_fields(visitor_code="v1")
    assert reason(exposure) == SHORT_REASON.format(
        field="device_id", source="visitor_code", length=2, minimum=5
    )
    # With its own device id the short visitor code is fine, unless it is the user id.
    exposure = with_fields(visitor_code="v1", amplitude_device_id=DEVICE)
    assert events(exposure)[0]["device_id"] == DEVICE
    assert reason(exposure, visitor_code_as_user_id=True) == SHORT_REASON.format(
        field="user_id", source="visitor_code", length=2, minimum=5
    )


def test_min_id_length_one() -> None:
    exposure = with_fields(visitor_code="v", cross_device_id="c")
    result = events(exposure, min_id_length=1)[0]
    assert (result["device_id"], result["user_id"]) == ("v", "c")


def test_min_id_length_three() -> None:
    assert events(with_fields(visitor_code="abc"), min_id_length=3)[0]["device_id"] == (
        "abc"
    )
    assert reason(with_fields(visitor_code="ab"), min_id_length=3) == (
        SHORT_REASON.format(
            field="device_id", source="visitor_code", length=2, minimum=3
        )
    )
    assert reason(with_fields(cross_device_id="cu"), min_id_length=3) == (
        SHORT_REASON.format(
            field="user_id", source="cross_device_id", length=2, minimum=3
        )
    )


def test_ids_over_1024_characters_are_rejected() -> None:
    assert events(with_fields(amplitude_device_id="d" * 1024))[0]["device_id"] == (
        "d" * 1024
    )
    assert reason(with_fields(amplitude_device_id="d" * 1025)) == (
        "device_id (from amplitude_device_id) has 1025 characters; Amplitude allows "
        "at most 1024"
    )
    assert reason(with_fields(cross_device_id="u" * 1025)) == (
        "user_id (from cross_device_id) has 1025 characters; Amplitude allows at most "
        "1024"
    )


def test_reason_names_the_field_not_the_id() -> None:
    assert "wxyz" not in reason(with_fields(cross_device_id="wxyz"))
    assert "qwertz" not in reason(
        with_fields(cross_device_id="q" * 2000, visitor_code="qwertz")
    )


def test_no_fallback_to_another_id() -> None:
    # A bad amplitude_device_id is refused, never replaced by the visitor code.
    assert reason(with_fields(amplitude_device_id="null")) == RESERVED_REASON.format(
        field="device_id", source="amplitude_device_id"
    )


# --- settings and modes -----------------------------------------------------------


@pytest.mark.parametrize(
    "value, expected",
    [
        ("identify", ("identify",)),
        ("identify,event", ("identify", "event")),
        (" identify , experiment ,event ", ("identify", "experiment", "event")),
        ("event,,identify,", ("event", "identify")),
        (["identify", "event,experiment"], ("identify", "event", "experiment")),
        ("", ()),
    ],
)
def test_parse_event_modes(value: object, expected: tuple) -> None:
    assert parse_event_modes(value) == expected


@pytest.mark.parametrize(
    "options, message",
    [
        ({"event_modes": ()}, "at least one event mode is needed"),
        (
            {"event_modes": ("identify", "exposure")},
            "unknown event mode 'exposure'; choose from identify, experiment, event",
        ),
        (
            {"event_modes": ("Identify",)},
            "unknown event mode 'Identify'; choose from identify, experiment, event",
        ),
        ({"event_modes": ("event", "event")}, "each event mode may be given once"),
        ({"exposure_keys": "names"}, "exposure_keys must be one of ids, keys"),
        ({"min_id_length": 0}, "min_id_length must be at least 1"),
        ({"exposure_event_type": ""}, "exposure_event_type must have 1 to 1,024"),
        (
            {"exposure_event_type": "e" * 1025},
            "exposure_event_type must have 1 to 1,024",
        ),
        (
            {"exposure_event_type": "$identify"},
            "'$identify' is an event type Amplitude",
        ),
        (
            {"exposure_event_type": "$Exposure"},
            "'$Exposure' is an event type Amplitude",
        ),
        (
            {"exposure_event_type": "[amplitude] REVENUE"},
            "'[amplitude] REVENUE' is an event type Amplitude reserves",
        ),
    ],
)
def test_invalid_settings(options: dict, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        MappingSettings(**options)
    assert str(caught.value).startswith(message)


def test_outbound_event_defaults_to_identify() -> None:
    message = RawMessage(b"{}")
    outbound = OutboundEvent({"event_type": "$identify"}, message)
    assert (outbound.mode, outbound.message) == ("identify", message)


# --- properties -------------------------------------------------------------------

ID_TEXT = st.one_of(
    st.text(max_size=12),
    st.sampled_from(sorted(RESERVED_IDS)).map(str.upper),
    st.text(min_size=1020, max_size=1030, alphabet="ab"),
)
EXPOSURES = st.builds(
    Exposure,
    visitor_code=st.one_of(st.text(min_size=1, max_size=255), ID_TEXT),
    experiment_id=st.integers(min_value=1, max_value=2**63 - 1),
    variation_id=st.integers(min_value=0, max_value=2**63 - 1),
    time_ms=st.integers(min_value=100_000_000_000, max_value=9_999_999_999_999),
    cross_device_id=st.none() | ID_TEXT,
    amplitude_device_id=st.none() | ID_TEXT,
    amplitude_session_id=st.none() | st.integers(min_value=-1, max_value=2**63 - 1),
    experiment_key=st.none() | st.text(max_size=20),
    variation_key=st.none() | st.text(max_size=20),
)
SETTINGS = st.builds(
    MappingSettings,
    event_modes=st.permutations(MODES).flatmap(
        lambda modes: st.integers(1, 3).map(lambda n: tuple(modes[:n]))
    ),
    exposure_keys=st.sampled_from(["ids", "keys"]),
    visitor_code_as_user_id=st.booleans(),
    min_id_length=st.integers(min_value=1, max_value=8),
)


def _valid_id(value: str, min_length: int) -> bool:
    return value.lower() not in RESERVED_IDS and min_length <= len(value) <= 1024


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(exposure=EXPOSURES, settings_=SETTINGS)
def test_events_pass_the_id_rules_or_are_refused(
    exposure: Exposure, settings_: MappingSettings
) -> None:
    try:
        result = to_amplitude_events(exposure, settings_)
    except InvalidExposure as error:
        assert error.reason.startswith(("device_id (from ", "user_id (from "))
        return
    assert len(result) == len(settings_.event_modes)
    for event in result:
        assert _valid_id(event["device_id"], settings_.min_id_length)
        if "user_id" in event:
            assert _valid_id(event["user_id"], settings_.min_id_length)
        assert HEX32.match(event["insert_id"])
        assert event["time"] == exposure.time_ms
    assert len({event["insert_id"] for event in result}) == len(result)

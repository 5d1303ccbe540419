"""Tests of transforms.amplitude: URLs, plans, request bodies, the response policy."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from transforms import amplitude
from transforms.amplitude import Decision, Rejection, decide

KEY = "secret-key-0123456789abcdef"


def _events(count: int) -> list[dict]:
    return [
        {
            "event_type": "$identify",
            "device_id": f"device-{i}",
            "user_id": f"user-{i}",
            "insert_id": f"insert-{i}",
        }
        for i in range(count)
    ]


# URLs, plans, settings, bodies


@pytest.mark.parametrize(
    ("region", "api", "expected"),
    [
        ("us", "http", "https://api2.amplitude.com/2/httpapi"),
        ("us", "batch", "https://api2.amplitude.com/batch"),
        ("eu", "http", "https://api.eu.amplitude.com/2/httpapi"),
        ("eu", "batch", "https://api.eu.amplitude.com/batch"),
    ],
)
def test_api_url_by_region_and_api(region: str, api: str, expected: str) -> None:
    assert amplitude.api_url(region, api) == expected


@pytest.mark.parametrize(
    ("endpoint", "api", "expected"),
    [
        ("http://127.0.0.1:8080", "http", "http://127.0.0.1:8080/2/httpapi"),
        ("http://127.0.0.1:8080/", "batch", "http://127.0.0.1:8080/batch"),
        ("https://proxy.example/amp/", "http", "https://proxy.example/amp/2/httpapi"),
    ],
)
def test_api_url_endpoint_override_appends_the_path(
    endpoint: str, api: str, expected: str
) -> None:
    assert amplitude.api_url("eu", api, endpoint) == expected


@pytest.mark.parametrize(
    ("region", "api"), [("us", "import"), ("asia", "http"), ("US", "http")]
)
def test_api_url_unknown_region_or_api_raises(region: str, api: str) -> None:
    with pytest.raises(ValueError):
        amplitude.api_url(region, api)


@pytest.mark.parametrize(
    ("plan", "batch_size", "requests_per_sec", "events_per_sec"),
    [
        ("starter", 10, 100, 1000),
        ("plus", 10, 100, 1000),
        ("growth", 1000, 0, 0),
        ("enterprise", 1000, 0, 0),
    ],
)
def test_plans_set_batch_size_and_rate_caps(
    plan: str, batch_size: int, requests_per_sec: float, events_per_sec: float
) -> None:
    limits = amplitude.PLANS[plan]
    assert limits.batch_size == batch_size
    assert limits.max_requests_per_sec == requests_per_sec
    assert limits.max_events_per_sec == events_per_sec


def test_plans_are_the_four_documented_ones() -> None:
    assert sorted(amplitude.PLANS) == ["enterprise", "growth", "plus", "starter"]


@pytest.mark.parametrize(("api", "limit"), [("http", 1_000_000), ("batch", 20_000_000)])
def test_delivery_settings_body_limit_by_api(api: str, limit: int) -> None:
    settings = amplitude.DeliverySettings(url="http://127.0.0.1:1/x", api=api)
    assert settings.max_body_bytes == limit


def test_request_body_without_options_at_the_default_min_id_length() -> None:
    events = _events(2)
    body = amplitude.request_body(events, KEY, 5)
    assert body == {"api_key": KEY, "events": events}


def test_request_body_sends_options_min_id_length_when_not_default() -> None:
    events = _events(1)
    body = amplitude.request_body(events, KEY, 3)
    assert body == {"api_key": KEY, "events": events, "options": {"min_id_length": 3}}


def test_encode_body_is_compact_utf8_json() -> None:
    body = {"api_key": "k", "events": [{"event_type": "été"}]}
    encoded = amplitude.encode_body(body)
    assert encoded == '{"api_key":"k","events":[{"event_type":"été"}]}'.encode()
    assert json.loads(encoded) == body


@given(
    events=st.lists(
        st.dictionaries(st.text(max_size=5), st.text(max_size=5) | st.integers()),
        max_size=4,
    ),
    key=st.text(max_size=12),
    min_id_length=st.integers(1, 8),
)
def test_encode_request_equals_encoding_the_whole_body(
    events: list[dict], key: str, min_id_length: int
) -> None:
    encoded = [amplitude.encode_body(event) for event in events]
    assert amplitude.encode_request(encoded, key, min_id_length) == (
        amplitude.encode_body(amplitude.request_body(events, key, min_id_length))
    )


# Backoff schedule


def test_backoff_ceiling_doubles_from_half_a_second_up_to_thirty() -> None:
    ceilings = [amplitude.backoff_ceiling_secs(n) for n in range(1, 10)]
    assert ceilings == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]
    assert amplitude.backoff_ceiling_secs(10_000) == 30.0


@pytest.mark.parametrize(
    ("attempt", "draw", "expected"),
    [(1, 0.0, 0.0), (1, 0.5, 0.25), (3, 0.5, 1.0), (7, 0.999, 29.97), (2, 7.0, 1.0)],
)
def test_backoff_is_full_jitter_over_the_ceiling(
    attempt: int, draw: float, expected: float
) -> None:
    assert amplitude.backoff_secs(attempt, draw) == pytest.approx(expected)


# The decision table

_INVALID = "Invalid field values on some events"
_INVALID_SUMMARY = f"400 {_INVALID}"
_THROTTLED = "Too many requests for some devices and users"
_QUOTA_REASON = (
    "the daily event quota of the event's {} is used up (429 " + _THROTTLED + "); "
    "Amplitude accepts its events again once its count over the last 24 hours falls "
    "below the quota"
)

DECISION_ROWS = [
    pytest.param(
        200,
        {"code": 200, "events_ingested": 3},
        3,
        Decision(200, "200 OK", delivered=(0, 1, 2)),
        id="200-delivered",
    ),
    pytest.param(
        400,
        {
            "code": 400,
            "error": _INVALID,
            "events_with_invalid_fields": {"user_id": [1]},
        },
        3,
        Decision(
            400,
            _INVALID_SUMMARY,
            rejected=(
                Rejection(
                    (1,),
                    "invalid_event",
                    "Amplitude rejected the event: invalid field user_id "
                    f"({_INVALID_SUMMARY})",
                ),
            ),
            resend_now=(0, 2),
        ),
        id="400-invalid-fields",
    ),
    pytest.param(
        400,
        {
            "code": 400,
            "error": _INVALID,
            "events_with_missing_fields": {"event_type": [0, 2]},
        },
        3,
        Decision(
            400,
            _INVALID_SUMMARY,
            rejected=(
                Rejection(
                    (0, 2),
                    "invalid_event",
                    "Amplitude rejected the event: missing field event_type "
                    f"({_INVALID_SUMMARY})",
                ),
            ),
            resend_now=(1,),
        ),
        id="400-missing-fields",
    ),
    pytest.param(
        400,
        {
            "code": 400,
            "error": "Invalid id length for user_id or device_id",
            "events_with_invalid_id_lengths": {"user_id": [2]},
        },
        3,
        Decision(
            400,
            "400 Invalid id length for user_id or device_id",
            rejected=(
                Rejection(
                    (2,),
                    "invalid_event",
                    "Amplitude rejected the event: invalid id length of user_id "
                    "(400 Invalid id length for user_id or device_id)",
                ),
            ),
            resend_now=(0, 1),
        ),
        id="400-invalid-id-lengths",
    ),
    pytest.param(
        400,
        {
            "code": 400,
            "error": "Events silenced for device_id",
            "silenced_devices": ["device-1"],
            "silenced_events": [1],
            "throttled_events": [],
        },
        3,
        Decision(
            400,
            "400 Events silenced for device_id",
            rejected=(
                Rejection(
                    (1,),
                    "invalid_event",
                    "Amplitude rejected the event: its device_id is silenced "
                    "(400 Events silenced for device_id)",
                ),
            ),
            resend_now=(0, 2),
        ),
        id="400-silenced-events",
    ),
    pytest.param(
        400,
        {
            "code": 400,
            "error": _INVALID,
            "events_with_invalid_fields": {"user_id": [0], "time": [0, 1]},
            "events_with_missing_fields": {"event_type": [0]},
        },
        3,
        Decision(
            400,
            _INVALID_SUMMARY,
            rejected=(
                Rejection(
                    (0,),
                    "invalid_event",
                    "Amplitude rejected the event: invalid field user_id, invalid "
                    f"field time, missing field event_type ({_INVALID_SUMMARY})",
                ),
                Rejection(
                    (1,),
                    "invalid_event",
                    "Amplitude rejected the event: invalid field time "
                    f"({_INVALID_SUMMARY})",
                ),
            ),
            resend_now=(2,),
        ),
        id="400-several-problems-per-event",
    ),
    pytest.param(
        400,
        {
            "code": 400,
            "error": _INVALID,
            "events_with_invalid_fields": {"time": [0, 1]},
        },
        2,
        Decision(
            400,
            _INVALID_SUMMARY,
            rejected=(
                Rejection(
                    (0, 1),
                    "invalid_event",
                    "Amplitude rejected the event: invalid field time "
                    f"({_INVALID_SUMMARY})",
                ),
            ),
        ),
        id="400-listing-every-event",
    ),
    pytest.param(
        400,
        {"code": 400, "error": "Invalid event JSON"},
        2,
        Decision(
            400,
            "400 Invalid event JSON",
            rejected=(
                Rejection(
                    (0, 1),
                    "rejected_batch",
                    "Amplitude rejected the batch (400 Invalid event JSON)",
                ),
            ),
        ),
        id="400-listing-none",
    ),
    pytest.param(
        400,
        {
            "code": 400,
            "error": _INVALID,
            "events_with_invalid_fields": {"user_id": [7, -1, True, "1"]},
        },
        2,
        Decision(
            400,
            _INVALID_SUMMARY,
            rejected=(
                Rejection(
                    (0, 1),
                    "rejected_batch",
                    f"Amplitude rejected the batch ({_INVALID_SUMMARY})",
                ),
            ),
        ),
        id="400-listing-only-unknown-indexes",
    ),
    pytest.param(
        400,
        {"code": 400, "error": f"Invalid API key: {KEY}"},
        2,
        Decision(
            400,
            "400 Invalid API key",
            rejected=(
                Rejection(
                    (0, 1),
                    "rejected_batch",
                    "Amplitude rejected the API key (400 Invalid API key); check the "
                    "key; a project in Amplitude's EU data center needs "
                    "--amplitude_region eu",
                ),
            ),
        ),
        id="400-invalid-api-key",
    ),
    pytest.param(
        400,
        {
            "code": 400,
            "error": "Request missing required field",
            "missing_field": "api_key",
        },
        1,
        Decision(
            400,
            "400 Request missing required field",
            rejected=(
                Rejection(
                    (0,),
                    "rejected_batch",
                    "Amplitude rejected the batch "
                    "(400 Request missing required field: api_key)",
                ),
            ),
        ),
        id="400-missing-request-field",
    ),
    pytest.param(
        401,
        None,
        2,
        Decision(
            401,
            "401 Unauthorized",
            rejected=(
                Rejection(
                    (0, 1),
                    "rejected_batch",
                    "Amplitude rejected the batch (401 Unauthorized)",
                ),
            ),
        ),
        id="401-no-body",
    ),
    pytest.param(
        403,
        {"code": 403, "error": "Forbidden"},
        2,
        Decision(
            403,
            "403 Forbidden",
            rejected=(
                Rejection(
                    (0, 1),
                    "rejected_batch",
                    "Amplitude rejected the batch (403 Forbidden)",
                ),
            ),
        ),
        id="403-forbidden",
    ),
    pytest.param(
        404,
        {"code": 404, "error": "Invalid request path"},
        1,
        Decision(
            404,
            "404 Invalid request path",
            rejected=(
                Rejection(
                    (0,),
                    "rejected_batch",
                    "Amplitude rejected the batch (404 Invalid request path)",
                ),
            ),
        ),
        id="404-other-4xx",
    ),
    pytest.param(
        302,
        None,
        1,
        Decision(
            302,
            "302 Found",
            rejected=(
                Rejection(
                    (0,),
                    "rejected_batch",
                    "Amplitude answered with an unexpected status (302 Found)",
                ),
            ),
        ),
        id="302-unexpected",
    ),
    pytest.param(
        413,
        {"code": 413, "error": "Payload too large"},
        5,
        Decision(413, "413 Payload too large", split=((0, 1, 2), (3, 4))),
        id="413-split-in-halves",
    ),
    pytest.param(
        413,
        {"code": 413, "error": "Payload too large"},
        1,
        Decision(
            413,
            "413 Payload too large",
            rejected=(
                Rejection(
                    (0,),
                    "too_large",
                    "the event alone is larger than Amplitude accepts "
                    "(413 Payload too large)",
                ),
            ),
        ),
        id="413-single-event",
    ),
    pytest.param(
        429,
        {
            "code": 429,
            "error": _THROTTLED,
            "throttled_devices": {"device-0": 31},
            "throttled_users": {},
            "throttled_events": [0],
        },
        3,
        Decision(429, f"429 {_THROTTLED}", resend_now=(1, 2), resend_after_pause=(0,)),
        id="429-throttled-events",
    ),
    pytest.param(
        429,
        {
            "code": 429,
            "error": _THROTTLED,
            "throttled_users": {"user-2": 40},
        },
        3,
        Decision(429, f"429 {_THROTTLED}", resend_now=(0, 1), resend_after_pause=(2,)),
        id="429-throttled-users-without-event-list",
    ),
    pytest.param(
        429,
        {
            "code": 429,
            "error": _THROTTLED,
            "throttled_events": [1, 2],
            "exceeded_daily_quota_devices": {"device-1": 500001},
            "exceeded_daily_quota_users": {},
        },
        3,
        Decision(
            429,
            f"429 {_THROTTLED}",
            rejected=(
                Rejection((1,), "daily_quota", _QUOTA_REASON.format("device_id")),
            ),
            resend_now=(0,),
            resend_after_pause=(2,),
        ),
        id="429-daily-quota-device",
    ),
    pytest.param(
        429,
        {
            "code": 429,
            "error": _THROTTLED,
            "throttled_events": [0],
            "exceeded_daily_quota_users": {"user-0": 500001},
        },
        2,
        Decision(
            429,
            f"429 {_THROTTLED}",
            rejected=(Rejection((0,), "daily_quota", _QUOTA_REASON.format("user_id")),),
            resend_now=(1,),
        ),
        id="429-daily-quota-user",
    ),
    pytest.param(
        429,
        None,
        3,
        Decision(429, "429 Too Many Requests", resend_after_pause=(0, 1, 2)),
        id="429-no-body-pauses-all",
    ),
    pytest.param(
        429,
        {"code": 429, "error": _THROTTLED, "throttled_events": []},
        2,
        Decision(429, f"429 {_THROTTLED}", resend_after_pause=(0, 1)),
        id="429-empty-list-pauses-all",
    ),
    pytest.param(
        408,
        {"code": 408, "error": "Request timeout"},
        2,
        Decision(408, "408 Request timeout", backoff=(0, 1)),
        id="408-backoff",
    ),
    pytest.param(
        500,
        None,
        2,
        Decision(500, "500 Internal Server Error", backoff=(0, 1)),
        id="500",
    ),
    pytest.param(
        502,
        {"code": 502, "error": "Bad gateway"},
        1,
        Decision(502, "502 Bad gateway", backoff=(0,)),
        id="502",
    ),
    pytest.param(
        503,
        {"code": 503, "error": "Service unavailable"},
        2,
        Decision(503, "503 Service unavailable", backoff=(0, 1)),
        id="503",
    ),
    pytest.param(
        504, None, 1, Decision(504, "504 Gateway Timeout", backoff=(0,)), id="504"
    ),
    pytest.param(
        503,
        "<html>upstream connect error</html>",
        1,
        Decision(503, "503 Service Unavailable", backoff=(0,)),
        id="503-body-not-json",
    ),
    pytest.param(
        400,
        ["not", "an", "object"],
        2,
        Decision(
            400,
            "400 Bad Request",
            rejected=(
                Rejection(
                    (0, 1),
                    "rejected_batch",
                    "Amplitude rejected the batch (400 Bad Request)",
                ),
            ),
        ),
        id="400-body-not-an-object",
    ),
]


@pytest.mark.parametrize(("status", "body", "count", "expected"), DECISION_ROWS)
def test_decide_follows_the_decision_table(
    status: int, body: object, count: int, expected: Decision
) -> None:
    assert decide(status, body, _events(count)) == expected


@pytest.mark.parametrize(
    ("error", "summary"),
    [
        (
            "ReadTimeout: Read timed out.",
            "no answer from Amplitude (ReadTimeout: Read timed out.)",
        ),
        (None, "no answer from Amplitude (unknown error)"),
    ],
)
def test_decide_without_an_answer_backs_off(error: str | None, summary: str) -> None:
    assert decide(None, None, _events(2), error) == Decision(
        None, summary, backoff=(0, 1)
    )


@pytest.mark.parametrize(
    "error",
    [f"Invalid API key: {KEY}", f"invalid_api_key {KEY}", f"INVALID API KEY {KEY}"],
)
def test_decide_never_quotes_the_echoed_api_key(error: str) -> None:
    decision = decide(400, {"code": 400, "error": error}, _events(1))
    assert KEY not in decision.summary
    assert all(KEY not in r.reason for r in decision.rejected)
    assert "--amplitude_region eu" in decision.rejected[0].reason


def test_decide_quotes_a_long_error_on_one_line_cut_to_size() -> None:
    error = "bad\nthing " * 100
    decision = decide(403, {"error": error}, _events(1))
    assert decision.summary.startswith("403 bad thing bad thing")
    assert decision.summary.endswith("...")
    assert len(decision.summary) == len("403 ") + 200
    assert "\n" not in decision.rejected[0].reason


_BODY_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 12) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=12,
)
_BODY_FIELDS = st.sampled_from(
    [
        "error",
        "missing_field",
        "events_with_invalid_fields",
        "events_with_missing_fields",
        "events_with_invalid_id_lengths",
        "silenced_events",
        "throttled_events",
        "throttled_users",
        "throttled_devices",
        "exceeded_daily_quota_users",
        "exceeded_daily_quota_devices",
    ]
)
_INDEX_MAPS = st.dictionaries(
    st.sampled_from(["user_id", "device_id", "time"]),
    st.lists(st.integers(-2, 12), max_size=5),
    max_size=2,
)
_IDS = st.lists(st.sampled_from([f"device-{i}" for i in range(4)] + ["user-1", "x"]))


@given(
    status=st.none()
    | st.sampled_from([200, 204, 302, 400, 401, 403, 404, 408, 413])
    | st.sampled_from([429, 500, 503, 504, 599, 600, 101]),
    body=st.none()
    | st.text(max_size=20)
    | st.dictionaries(_BODY_FIELDS, _BODY_VALUES | _INDEX_MAPS | _IDS, max_size=5),
    count=st.integers(1, 8),
)
def test_decide_places_every_event_exactly_once(
    status: int | None, body: object, count: int
) -> None:
    decision = decide(status, body, _events(count), None if status else "OSError")
    placed = [
        *decision.delivered,
        *(i for r in decision.rejected for i in r.indexes),
        *decision.resend_now,
        *decision.resend_after_pause,
        *(i for part in decision.split for i in part),
        *decision.backoff,
    ]
    assert sorted(placed) == list(range(count))
    assert all(
        r.kind in amplitude.DEAD_LETTER_KINDS and r.reason for r in decision.rejected
    )
    assert all(part for part in decision.split)


@given(count=st.integers(1, 8), body=st.dictionaries(_BODY_FIELDS, _INDEX_MAPS | _IDS))
def test_decide_makes_progress_on_every_400_and_429(count: int, body: dict) -> None:
    """Each 400 or 429 removes or pauses at least one event: no spinning on resends."""
    for status in (400, 429):
        decision = decide(status, body, _events(count))
        assert len(decision.resend_now) < count


def test_throttle_waves_keep_each_id_within_the_threshold_and_in_order() -> None:
    events = [{"device_id": "a"}] * 5 + [{"device_id": "b", "user_id": "u"}] * 2
    events += [{"device_id": "c", "user_id": "u"}] * 2
    waves = amplitude.throttle_waves(events, list(range(9)), 2.5)  # 2 per wave
    assert waves == [(0, 1, 5, 6), (2, 3, 7, 8), (4,)]
    assert amplitude.throttle_waves(events, [0, 1, 2], 1.0) == [(0,), (1,), (2,)]


def test_throttle_waves_without_a_threshold_are_one_wave() -> None:
    events = [{"device_id": "a"}] * 3
    assert amplitude.throttle_waves(events, [0, 2], None) == [(0, 2)]
    assert amplitude.throttle_waves(events, [], 30.0) == []


def test_a_429_carries_its_eps_threshold() -> None:
    events = [{"device_id": "a"}, {"device_id": "b"}]
    body = {
        "code": 429,
        "error": "Too many requests for some devices and users",
        "eps_threshold": 30,
        "throttled_devices": {"a": 31},
        "throttled_events": [0],
    }
    decision = amplitude.decide(429, body, events)
    assert (decision.resend_after_pause, decision.resend_now) == ((0,), (1,))
    assert decision.eps_threshold == 30.0
    assert amplitude.decide(429, {"eps_threshold": True}, events).eps_threshold is None

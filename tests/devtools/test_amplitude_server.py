"""Tests of the local Amplitude-compatible server over real HTTP on loopback."""

from __future__ import annotations

import gzip
import json
import threading
import time
from collections.abc import Iterator

import pytest
import requests

from devtools.amplitude_server import AmplitudeServer, FaultConfig

KEY = "test-api-key"
HTTP = "/2/httpapi"
BATCH = "/batch"


def event(device_id: str | None = "device-0001", **fields: object) -> dict:
    result: dict = {"event_type": "Kameleoon Exposure"}
    if device_id is not None:
        result["device_id"] = device_id
    result.update(fields)
    return result


@pytest.fixture
def server() -> Iterator[AmplitudeServer]:
    with AmplitudeServer(api_keys=[KEY]) as srv:
        yield srv


def post(
    srv: AmplitudeServer, events: list, path: str = HTTP, **body: object
) -> requests.Response:
    payload = {"api_key": KEY, "events": events, **body}
    return requests.post(srv.url + path, json=payload, timeout=5)


def test_url_and_clean_stop() -> None:
    before = set(threading.enumerate())
    srv = AmplitudeServer().start()
    assert srv.url == f"http://127.0.0.1:{srv.port}"
    session = requests.Session()
    assert session.get(srv.url + "/_stats", timeout=5).status_code == 200
    srv.stop()
    session.close()
    assert set(threading.enumerate()) <= before
    with pytest.raises(requests.ConnectionError):
        requests.get(srv.url + "/_stats", timeout=5)


def test_accepts_and_answers_200(server: AmplitudeServer) -> None:
    events = [event(insert_id="a"), event("device-0002", user_id="user-1")]
    response = post(server, events)
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {
        "code",
        "events_ingested",
        "payload_size_bytes",
        "server_upload_time",
    }
    assert body["code"] == 200
    assert body["events_ingested"] == 2
    assert body["payload_size_bytes"] == len(response.request.body)
    assert abs(body["server_upload_time"] - time.time() * 1000) < 5000
    assert server.accepted_events() == events
    assert server.accepted_count() == 2
    assert list(server.acceptance_times()) == ["a"]
    assert response.headers["Content-Type"] == "application/json"
    assert int(response.headers["Content-Length"]) == len(response.content)


def test_accepted_events_are_copies(server: AmplitudeServer) -> None:
    post(server, [event(event_properties={"k": "v"})])
    server.accepted_events()[0]["event_properties"]["k"] = "changed"
    assert server.accepted_events()[0]["event_properties"] == {"k": "v"}


def test_http_dedup_per_device_and_insert_id(server: AmplitudeServer) -> None:
    first = [event("device-0001", insert_id="i1"), event("device-0002", insert_id="i1")]
    assert post(server, first).status_code == 200
    again = [
        event("device-0001", insert_id="i1"),
        event("device-0001", insert_id="i2"),
        event("device-0001"),
        event("device-0001"),
    ]
    response = post(server, again)
    assert response.json()["events_ingested"] == 4
    assert server.accepted_count() == 5
    assert [(e["device_id"], e.get("insert_id")) for e in server.accepted_events()] == [
        ("device-0001", "i1"),
        ("device-0002", "i1"),
        ("device-0001", "i2"),
        ("device-0001", None),
        ("device-0001", None),
    ]
    assert server.stats()["duplicates_absorbed"] == 1


def test_batch_dedup_per_insert_id(server: AmplitudeServer) -> None:
    events = [
        event("device-0001", insert_id="i1"),
        event("device-0002", insert_id="i1"),
    ]
    response = post(server, events, BATCH)
    assert response.status_code == 200
    assert response.json()["events_ingested"] == 2
    assert server.accepted_events() == [events[0]]
    assert server.stats()["duplicates_absorbed"] == 1


def test_invalid_api_key_is_echoed(server: AmplitudeServer) -> None:
    response = requests.post(
        server.url + HTTP, json={"api_key": "secret-123", "events": [event()]}
    )
    assert response.status_code == 400
    assert response.json() == {"code": 400, "error": "Invalid API key: secret-123"}
    assert server.accepted_count() == 0


def test_missing_api_key(server: AmplitudeServer) -> None:
    response = requests.post(server.url + HTTP, json={"events": [event()]})
    assert response.status_code == 400
    assert response.json() == {
        "code": 400,
        "error": "Request missing required field",
        "missing_field": "api_key",
    }


@pytest.mark.parametrize("events", [None, "x", {}, []])
def test_missing_events(server: AmplitudeServer, events: object) -> None:
    body = {"api_key": KEY} if events is None else {"api_key": KEY, "events": events}
    response = requests.post(server.url + BATCH, json=body)
    assert response.status_code == 400
    assert response.json() == {
        "code": 400,
        "error": "Request missing required field",
        "missing_field": "events",
    }


@pytest.mark.parametrize("data", [b"{not json", b"[1, 2]", b'"text"', b"\xff\xfe"])
def test_invalid_json(server: AmplitudeServer, data: bytes) -> None:
    response = requests.post(server.url + HTTP, data=data)
    assert response.status_code == 400
    assert response.json() == {"code": 400, "error": "Invalid JSON request body"}


def test_missing_body(server: AmplitudeServer) -> None:
    response = requests.post(server.url + HTTP, data=b"")
    assert response.status_code == 400
    assert response.json() == {"code": 400, "error": "Missing request body"}


def test_non_object_event(server: AmplitudeServer) -> None:
    response = post(server, [event(), "text"])
    assert response.status_code == 400
    assert response.json() == {"code": 400, "error": "Invalid event JSON"}


def test_413_on_event_count() -> None:
    with AmplitudeServer(max_events=3) as srv:
        assert post(srv, [event()] * 3).status_code == 200
        for path in (HTTP, BATCH):
            response = post(srv, [event()] * 4, path)
            assert response.status_code == 413
            assert response.json() == {"code": 413, "error": "Payload too large"}
        assert srv.accepted_count() == 3


def test_413_on_bytes_per_api() -> None:
    with AmplitudeServer(http_max_bytes=500, batch_max_bytes=5000) as srv:
        events = [event(event_properties={"p": "x" * 200}) for _ in range(3)]
        response = post(srv, events)
        assert response.status_code == 413
        assert response.json() == {"code": 413, "error": "Payload too large"}
        assert post(srv, events, BATCH).status_code == 200
        assert post(srv, events[:1]).status_code == 200
        assert srv.accepted_count() == 4


def test_413_checked_on_decompressed_size() -> None:
    with AmplitudeServer(http_max_bytes=2000) as srv:
        body = {"api_key": KEY, "events": [event(event_properties={"p": "a" * 1000})]}
        body["events"] *= 3
        data = gzip.compress(json.dumps(body).encode())
        assert len(data) < 2000
        response = requests.post(
            srv.url + HTTP,
            data=data,
            headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
        )
        assert response.status_code == 413


def test_gzip_body(server: AmplitudeServer) -> None:
    body = {"api_key": KEY, "events": [event(insert_id="g1")]}
    raw = json.dumps(body).encode()
    response = requests.post(
        server.url + HTTP,
        data=gzip.compress(raw),
        headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
    )
    assert response.status_code == 200
    assert response.json()["payload_size_bytes"] == len(raw)
    assert server.accepted_events() == body["events"]


@pytest.mark.parametrize(
    "data", [b"not gzip", gzip.compress(b'{"api_key": "test-api-key"}')[:-12]]
)
def test_bad_gzip(server: AmplitudeServer, data: bytes) -> None:
    response = requests.post(
        server.url + HTTP, data=data, headers={"Content-Encoding": "gzip"}
    )
    assert response.status_code == 400
    assert response.json() == {"code": 400, "error": "Invalid JSON request body"}


def test_missing_fields_every_index(server: AmplitudeServer) -> None:
    events = [
        {"device_id": "device-0001"},
        event(),
        {"event_type": "x"},
        {"device_id": "device-0001", "event_type": None},
        {"event_type": "x", "user_id": None, "device_id": None},
    ]
    response = post(server, events)
    assert response.status_code == 400
    assert response.json() == {
        "code": 400,
        "error": "Invalid field values on some events",
        "events_with_missing_fields": {"event_type": [0, 3], "device_id": [2, 4]},
    }
    assert server.accepted_count() == 0


def test_invalid_field_types(server: AmplitudeServer) -> None:
    events = [
        event(time="2024-01-01T00:00:00Z"),
        event(time=True),
        event(time=1.5),
        event(session_id="1"),
        event(insert_id=7),
        event(event_properties=[1]),
        event(user_properties="x"),
        {"event_type": 5, "device_id": "device-0001"},
        event(12345),
        event(user_id=123456),
        event(event_properties={"nested": [{"deep": "y" * 1025}]}),
        event(city="c" * 1025),
        event(time=1_700_000_000_000, session_id=-1, insert_id="ok"),
    ]
    response = post(server, events)
    assert response.status_code == 400
    assert response.json() == {
        "code": 400,
        "error": "Invalid field values on some events",
        "events_with_invalid_fields": {
            "time": [0, 1, 2],
            "session_id": [3],
            "insert_id": [4],
            "event_properties": [5, 10],
            "user_properties": [6],
            "event_type": [7],
            "device_id": [8],
            "user_id": [9],
            "city": [11],
        },
    }
    assert server.accepted_count() == 0


def test_string_of_1024_chars_is_accepted(server: AmplitudeServer) -> None:
    response = post(server, [event(event_properties={"k": "z" * 1024})])
    assert response.status_code == 200


def test_reserved_ids_case_insensitive(server: AmplitudeServer) -> None:
    events = [
        event("NULL"),
        event(None, user_id="Anonymous"),
        event("00000000-0000-0000-0000-000000000000"),
        event("device-0001", user_id="Undefined"),
        event('""'),
        event("LMY47D"),
        event("-1"),
        event("device-0002", user_id="real-user"),
    ]
    response = post(server, events, options={"min_id_length": 1})
    assert response.status_code == 400
    assert response.json() == {
        "code": 400,
        "error": "Invalid field values on some events",
        "events_with_invalid_fields": {
            "device_id": [0, 2, 4, 5, 6],
            "user_id": [1, 3],
        },
    }


def test_short_ids_with_default_min_length(server: AmplitudeServer) -> None:
    events = [
        event("abcd"),
        event("abcde"),
        event(None, user_id="u1"),
        event("d", user_id="u"),
    ]
    response = post(server, events)
    assert response.status_code == 400
    assert response.json() == {
        "code": 400,
        "error": "Invalid field values on some events",
        "events_with_invalid_id_lengths": {"device_id": [0, 3], "user_id": [2, 3]},
    }
    assert server.accepted_count() == 0


def test_short_ids_with_min_id_length_option(server: AmplitudeServer) -> None:
    events = [event("abcd"), event(None, user_id="u")]
    response = post(server, events, BATCH, options={"min_id_length": 1})
    assert response.status_code == 200
    assert server.accepted_events() == events


def test_all_maps_together(server: AmplitudeServer) -> None:
    events = [event("abc"), {"device_id": "device-0001"}, event("none"), event()]
    response = post(server, events)
    assert response.json() == {
        "code": 400,
        "error": "Invalid field values on some events",
        "events_with_missing_fields": {"event_type": [1]},
        "events_with_invalid_fields": {"device_id": [2]},
        "events_with_invalid_id_lengths": {"device_id": [0]},
    }


def test_silenced_devices() -> None:
    with AmplitudeServer(silenced_devices=["muted-device"]) as srv:
        events = [event(), event("muted-device"), event("muted-device")]
        response = post(srv, events)
        assert response.status_code == 400
        assert response.json() == {
            "code": 400,
            "error": "Events silenced for device_id",
            "silenced_devices": ["muted-device"],
            "silenced_events": [1, 2],
            "eps_threshold": 30,
            "throttled_devices": {},
            "throttled_events": [],
            "exceeded_daily_quota_devices": {},
        }
        assert srv.accepted_count() == 0
        assert post(srv, events[:1]).status_code == 200


def test_throttling_429_and_window() -> None:
    # 4 events/s over 0.5 s: at most 2 events per id in the window.
    with AmplitudeServer(http_eps_per_device=4, throttle_window_secs=0.5) as srv:
        assert post(srv, [event("device-warm", user_id="user-hot1")]).status_code == 200
        events = [
            event("device-hot1"),
            event("device-cool"),
            event("device-hot1"),
            event("device-hot1"),
            event("device-cold", user_id="user-hot1"),
            event("device-cold", user_id="user-hot1"),
        ]
        response = post(srv, events)
        assert response.status_code == 429
        assert response.json() == {
            "code": 429,
            "error": "Too many requests for some devices and users",
            "eps_threshold": 4,
            "throttled_devices": {"device-hot1": 6},
            "throttled_users": {"user-hot1": 6},
            "throttled_events": [0, 2, 3, 4, 5],
            "exceeded_daily_quota_devices": {},
            "exceeded_daily_quota_users": {},
        }
        assert srv.accepted_count() == 1
        # The ids that were not throttled were not counted by the refused request.
        assert post(srv, [event("device-cold")] * 2).status_code == 200
        # The throttled device stays throttled while it keeps sending.
        response = post(srv, [event("device-hot1")])
        assert response.status_code == 429
        assert response.json()["throttled_devices"] == {"device-hot1": 8}
        assert response.json()["throttled_events"] == [0]
        # Windows are per API: /batch has its own (default 1000 eps) threshold.
        assert post(srv, [event("device-hot1")] * 3, BATCH).status_code == 200
        time.sleep(0.55)
        assert post(srv, [event("device-hot1")] * 2).status_code == 200
        assert srv.accepted_count() == 8
        assert srv.stats()["by_status"] == {"200": 4, "429": 2}


def test_batch_throttle_threshold() -> None:
    with AmplitudeServer(batch_eps_per_device=2, throttle_window_secs=1.0) as srv:
        response = post(srv, [event(None, user_id="user-0001")] * 3, BATCH)
        assert response.status_code == 429
        assert response.json() == {
            "code": 429,
            "error": "Too many requests for some devices and users",
            "eps_threshold": 2,
            "throttled_devices": {},
            "throttled_users": {"user-0001": 3},
            "throttled_events": [0, 1, 2],
            "exceeded_daily_quota_devices": {},
            "exceeded_daily_quota_users": {},
        }


def test_daily_quota_across_apis() -> None:
    with AmplitudeServer(daily_quota_per_device=3) as srv:
        assert post(srv, [event("device-aaaa")] * 2).status_code == 200
        response = post(
            srv, [event("device-aaaa"), event("device-bbbb"), event("device-aaaa")]
        )
        assert response.status_code == 429
        assert response.json() == {
            "code": 429,
            "error": "Too many requests for some devices and users",
            "eps_threshold": 30,
            "throttled_devices": {},
            "throttled_users": {},
            "throttled_events": [0, 2],
            "exceeded_daily_quota_devices": {"device-aaaa": 4},
            "exceeded_daily_quota_users": {},
        }
        assert post(srv, [event("device-aaaa")], BATCH).status_code == 200
        response = post(srv, [event("device-aaaa")], BATCH)
        assert response.status_code == 429
        assert response.json()["exceeded_daily_quota_devices"] == {"device-aaaa": 4}
        assert response.json()["eps_threshold"] == 1000
        assert srv.accepted_count() == 3


SCRIPTED_BODIES = {
    408: {"code": 408, "error": "Request timeout"},
    400: {"code": 400, "error": "Invalid event JSON"},
    401: {"code": 401, "error": "Unauthorized"},
    403: {"code": 403, "error": "Forbidden"},
    413: {"code": 413, "error": "Payload too large"},
    500: {"code": 500, "error": "Internal server error"},
    502: {"code": 502, "error": "Bad gateway"},
    503: {"code": 503, "error": "Service unavailable"},
    504: {"code": 504, "error": "Gateway timeout"},
}


def test_scripted_statuses(server: AmplitudeServer) -> None:
    server.faults.script = [*SCRIPTED_BODIES, 0, 429, 200]
    events = [event(insert_id="s1")]
    for status, body in SCRIPTED_BODIES.items():
        response = post(server, events)
        assert (response.status_code, response.json()) == (status, body)
    with pytest.raises(requests.ConnectionError):
        post(server, events)
    response = post(server, [event("device-0001"), event("device-0002")])
    assert response.status_code == 429
    assert response.json() == {
        "code": 429,
        "error": "Too many requests for some devices and users",
        "eps_threshold": 30,
        "throttled_devices": {"device-0001": 1, "device-0002": 1},
        "throttled_users": {},
        "throttled_events": [0, 1],
        "exceeded_daily_quota_devices": {},
        "exceeded_daily_quota_users": {},
    }
    assert server.accepted_count() == 0
    assert post(server, events).status_code == 200
    assert post(server, events).status_code == 200
    assert server.faults.script == []
    assert server.accepted_count() == 1
    stats = server.stats()
    assert stats["requests"] == len(SCRIPTED_BODIES) + 4
    assert stats["dropped_connections"] == 1
    assert stats["duplicates_absorbed"] == 1
    assert stats["by_status"] == {
        **{str(s): 1 for s in SCRIPTED_BODIES},
        "429": 1,
        "200": 2,
    }


def test_replacing_faults_at_run_time(server: AmplitudeServer) -> None:
    server.faults = FaultConfig(script=[503])
    assert post(server, [event()]).status_code == 503
    assert post(server, [event()]).status_code == 200


def test_server_errors_ingest_nothing(server: AmplitudeServer) -> None:
    server.faults = FaultConfig(server_error_rate=1.0, seed=3)
    statuses = {post(server, [event()]).status_code for _ in range(12)}
    assert statuses <= {500, 502, 503, 504}
    assert len(statuses) > 1
    assert server.accepted_count() == 0
    assert server.stats()["events_received"] == 12


def test_error_after_ingest(server: AmplitudeServer) -> None:
    server.faults = FaultConfig(error_after_ingest_rate=1.0, seed=1)
    events = [event(insert_id="e1")]
    response = post(server, events)
    assert response.status_code in (500, 502, 504)
    assert server.accepted_events() == events
    server.faults.error_after_ingest_rate = 0.0
    assert post(server, events).status_code == 200
    assert server.accepted_count() == 1
    assert server.stats()["duplicates_absorbed"] == 1


def test_error_after_ingest_keeps_validation_errors(server: AmplitudeServer) -> None:
    server.faults = FaultConfig(error_after_ingest_rate=1.0)
    assert post(server, [event("abc")]).status_code == 400


def test_drops_before_and_after_ingest(server: AmplitudeServer) -> None:
    server.faults = FaultConfig(drop_rate=1.0, seed=5)
    for index in range(20):
        with pytest.raises(requests.ConnectionError):
            post(server, [event(f"device-{index:04d}", insert_id="d")])
    accepted = server.accepted_count()
    assert 0 < accepted < 20
    stats = server.stats()
    assert stats["dropped_connections"] == 20
    assert stats["by_status"] == {}
    server.faults = FaultConfig()
    for index in range(20):
        assert (
            post(server, [event(f"device-{index:04d}", insert_id="d")]).status_code
            == 200
        )
    assert server.accepted_count() == 20
    assert server.stats()["duplicates_absorbed"] == accepted


def test_delay() -> None:
    with AmplitudeServer(faults=FaultConfig(delay_secs=0.2)) as srv:
        started = time.monotonic()
        assert post(srv, [event()]).status_code == 200
        assert time.monotonic() - started >= 0.2
        started = time.monotonic()
        assert requests.get(srv.url + "/_stats", timeout=5).status_code == 200
        assert time.monotonic() - started < 0.2


def test_keep_alive_uses_one_connection(server: AmplitudeServer) -> None:
    with requests.Session() as session:
        for index in range(3):
            response = session.post(
                server.url + HTTP,
                json={"api_key": KEY, "events": [event(insert_id=f"k{index}")]},
            )
            assert response.status_code == 200
            assert response.headers.get("Connection", "").lower() != "close"
        assert session.post(server.url + HTTP, data=b"{").status_code == 400
        assert session.get(server.url + "/_stats").json()["connections"] == 1
    requests.get(server.url + "/_stats", timeout=5)
    assert server.stats()["connections"] == 2


def test_stats_and_events_endpoints(server: AmplitudeServer) -> None:
    events = [event(insert_id="x1"), event(insert_id="x1")]
    post(server, events)
    post(server, [event("bad")])
    stats = requests.get(server.url + "/_stats", timeout=5).json()
    assert stats == {
        "requests": 2,
        "by_status": {"200": 1, "400": 1},
        "accepted": 1,
        "duplicates_absorbed": 1,
        "dropped_connections": 0,
        "events_received": 3,
        "connections": 3,
    }
    assert requests.get(server.url + "/_events", timeout=5).json() == events[:1]


def test_invalid_paths(server: AmplitudeServer) -> None:
    invalid = {"code": 400, "error": "Invalid request path"}
    for method, path in (("POST", "/import"), ("GET", "/2/httpapi"), ("GET", "/")):
        response = requests.request(method, server.url + path, json={}, timeout=5)
        assert (response.status_code, response.json()) == (400, invalid)
    assert server.stats()["by_status"] == {"400": 3}


def test_reset(server: AmplitudeServer) -> None:
    post(server, [event(insert_id="r1")])
    server.reset()
    assert server.accepted_count() == 0
    assert server.acceptance_times() == {}
    assert server.stats()["requests"] == 0
    assert post(server, [event(insert_id="r1")]).status_code == 200
    assert server.accepted_count() == 1


def test_concurrent_requests() -> None:
    with AmplitudeServer(http_eps_per_device=10_000) as srv:

        def send(worker: int) -> None:
            with requests.Session() as session:
                for index in range(20):
                    body = {
                        "api_key": KEY,
                        "events": [event(insert_id=f"{worker}-{index}")] * 2,
                    }
                    assert session.post(srv.url + HTTP, json=body).status_code == 200

        threads = [threading.Thread(target=send, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        stats = srv.stats()
        assert stats["accepted"] == 160
        assert stats["duplicates_absorbed"] == 160
        assert stats["connections"] == 8
        assert len(srv.acceptance_times()) == 160


def test_chunked_body(server: AmplitudeServer) -> None:
    data = json.dumps({"api_key": KEY, "events": [event(insert_id="c1")]}).encode()
    response = requests.post(
        server.url + HTTP, data=iter([data[:10], data[10:]]), timeout=5
    )
    assert response.request.headers["Transfer-Encoding"] == "chunked"
    assert response.status_code == 200
    assert server.accepted_count() == 1

"""A local Amplitude-compatible ingestion server for tests, benchmarks and demos.

It serves real HTTP on loopback and applies the documented rules of Amplitude's
HTTP V2 API (``POST /2/httpapi``) and Batch Event Upload API (``POST /batch``):
request and event validation, size limits, silenced devices, per-device and
per-user throttling, a daily quota per device and ``insert_id`` deduplication
(per ``device_id`` + ``insert_id`` on HTTP V2, per ``insert_id`` on Batch). The
answers carry the same status codes and JSON bodies as Amplitude's. Faults
(server errors, errors after ingestion, dropped connections, slow answers and
scripted statuses) can be injected and changed while it runs.

In a test::

    with AmplitudeServer(api_keys=["test-api-key"]) as server:
        requests.post(server.url + "/2/httpapi", json={...})
        assert server.accepted_count() == 1

From a shell, in the foreground until Ctrl-C or SIGTERM (then it prints the final
statistics as JSON)::

    python -m devtools.amplitude_server --port 8080 --api-key demo-key

Other processes read the results with ``GET /_stats`` (the ``stats()`` JSON) and
``GET /_events`` (the accepted events as a JSON array).
"""

from __future__ import annotations

import argparse
import collections
import json
import logging
import random
import signal
import socket
import sys
import threading
import time
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

_LOGGER = logging.getLogger(__name__)

HTTP_API_PATH = "/2/httpapi"
BATCH_API_PATH = "/batch"
STATS_PATH = "/_stats"
EVENTS_PATH = "/_events"

MAX_STRING_LENGTH = 1024
DEFAULT_MIN_ID_LENGTH = 5

# Ids Amplitude refuses, compared case-insensitively.
RESERVED_IDS = frozenset(
    {
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
)

_FAULT_ERRORS = {
    400: "Invalid event JSON",
    401: "Unauthorized",
    403: "Forbidden",
    408: "Request timeout",
    413: "Payload too large",
    500: "Internal server error",
    502: "Bad gateway",
    503: "Service unavailable",
    504: "Gateway timeout",
}

# A raw body larger than this many times the API's byte limit is refused with 413
# without being read (the connection is then closed).
_RAW_BODY_FACTOR = 4
_RAW_BODY_SLACK = 65_536


@dataclass
class FaultConfig:
    """Faults the server injects; the object may be changed while the server runs.

    ``server_error_rate``: fraction of requests answered 500/502/503/504 without
    ingesting. ``error_after_ingest_rate``: fraction of requests ingested normally
    but answered 500/502/504. ``drop_rate``: fraction of requests whose connection
    is closed without an answer, half of them before and half after ingesting.
    ``delay_secs``: pause before handling every ingestion request. ``script``:
    statuses for the next requests, consumed one per request before the random
    faults: 200 processes normally, 0 drops the connection, any other status is
    answered with Amplitude's body for it without ingesting. ``seed`` seeds the
    random choices.
    """

    server_error_rate: float = 0.0
    error_after_ingest_rate: float = 0.0
    drop_rate: float = 0.0
    delay_secs: float = 0.0
    script: list[int] = field(default_factory=list)
    seed: int | None = None


@dataclass
class _Reply:
    status: int = 200
    body: dict[str, Any] | None = None
    drop: bool = False


@dataclass
class _Parsed:
    payload: dict[str, Any]
    size: int


class _Window:
    """Event counts of one id over a sliding time window."""

    __slots__ = ("entries", "total")

    def __init__(self) -> None:
        self.entries: collections.deque[tuple[float, int]] = collections.deque()
        self.total = 0

    def prune(self, oldest: float) -> None:
        while self.entries and self.entries[0][0] < oldest:
            self.total -= self.entries.popleft()[1]

    def add(self, now: float, count: int) -> None:
        self.entries.append((now, count))
        self.total += count


def _number(value: float) -> int | float:
    """Return an integral float as int so that JSON shows ``30`` and not ``30.0``."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _has_long_string(value: Any) -> bool:
    """Whether any string (value or object key) inside ``value`` is too long."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if len(item) > MAX_STRING_LENGTH:
                return True
        elif isinstance(item, dict):
            for key, sub in item.items():
                if isinstance(key, str) and len(key) > MAX_STRING_LENGTH:
                    return True
                stack.append(sub)
        elif isinstance(item, list):
            stack.extend(item)
    return False


def _reject_constant(name: str) -> Any:
    raise ValueError(f"invalid JSON constant {name}")


def _error(status: int, message: str, **extra: Any) -> _Reply:
    body: dict[str, Any] = {"code": status, "error": message}
    body.update(extra)
    return _Reply(status, body)


def validate_events(events: list[Any], min_id_length: int) -> dict[str, Any]:
    """Return the index maps of events that break Amplitude's per-event rules.

    The keys are ``events_with_missing_fields``, ``events_with_invalid_fields`` and
    ``events_with_invalid_id_lengths``; only non-empty maps are returned. Each map
    goes from a field name to the ascending indexes of the offending events. An id
    that is reserved is reported as invalid and not also as too short.
    """
    missing: dict[str, list[int]] = {}
    invalid: dict[str, list[int]] = {}
    id_lengths: dict[str, list[int]] = {}
    for index, event in enumerate(events):
        bad: list[str] = []
        event_type = event.get("event_type")
        if event_type is None:
            missing.setdefault("event_type", []).append(index)
        elif not isinstance(event_type, str):
            bad.append("event_type")
        has_id = False
        for name in ("user_id", "device_id"):
            value = event.get(name)
            if value is None:
                continue
            has_id = True
            if not isinstance(value, str) or value.lower() in RESERVED_IDS:
                bad.append(name)
            elif len(value) < min_id_length:
                id_lengths.setdefault(name, []).append(index)
        if not has_id:
            missing.setdefault("device_id", []).append(index)
        for name in ("time", "session_id"):
            value = event.get(name)
            if value is not None and not _is_int(value):
                bad.append(name)
        insert_id = event.get("insert_id")
        if insert_id is not None and not isinstance(insert_id, str):
            bad.append("insert_id")
        for name in ("event_properties", "user_properties"):
            value = event.get(name)
            if value is not None and not isinstance(value, dict):
                bad.append(name)
        for name, value in event.items():
            if (len(name) > MAX_STRING_LENGTH or _has_long_string(value)) and (
                name not in bad
            ):
                bad.append(name)
        for name in dict.fromkeys(bad):
            invalid.setdefault(name, []).append(index)
    maps = {
        "events_with_missing_fields": missing,
        "events_with_invalid_fields": invalid,
        "events_with_invalid_id_lengths": id_lengths,
    }
    return {key: value for key, value in maps.items() if value}


class _HTTPServer(ThreadingHTTPServer):
    """Threading server that tracks its connections so that it can close them."""

    daemon_threads = True

    def __init__(
        self,
        address: tuple[str, int],
        handler: type[BaseHTTPRequestHandler],
        app: AmplitudeServer,
    ) -> None:
        self.app = app
        self._connections: dict[socket.socket, threading.Thread] = {}
        self._connections_lock = threading.Lock()
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        thread = threading.Thread(
            target=self.process_request_thread,
            args=(request, client_address),
            name=f"amplitude-server-conn-{client_address[1]}",
            daemon=True,
        )
        with self._connections_lock:
            self._connections[request] = thread
        self.app._count_connection()
        thread.start()

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._connections_lock:
                self._connections.pop(request, None)

    def close_connections(self, timeout: float) -> None:
        with self._connections_lock:
            connections = list(self._connections.items())
        for sock, _ in connections:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        deadline = time.monotonic() + timeout
        for _, thread in connections:
            thread.join(max(0.0, deadline - time.monotonic()))


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server_version = "AmplitudeLocal/1.0"
    server: _HTTPServer

    def version_string(self) -> str:
        return self.server_version

    def log_message(self, fmt: str, *args: Any) -> None:
        _LOGGER.debug("%s - " + fmt, self.address_string(), *args)

    def _send_json(self, status: int, payload: Any) -> None:
        data = json.dumps(payload, separators=(",", ":")).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)

    def _drop(self) -> None:
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _read_chunked(self, limit: int) -> bytes | None:
        parts: list[bytes] = []
        size = 0
        while True:
            line = self.rfile.readline(65_537)
            try:
                chunk_size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                return None
            if chunk_size == 0:
                while self.rfile.readline(65_537) not in (b"\r\n", b"\n", b""):
                    pass
                return b"".join(parts)
            size += chunk_size
            if size > limit:
                return None
            parts.append(self.rfile.read(chunk_size))
            self.rfile.readline(65_537)

    def _read_body(self, limit: int) -> bytes | None:
        """Read the request body; None when it is too large or malformed."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            body = self._read_chunked(limit)
        else:
            try:
                length = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                return None
            if length < 0 or length > limit:
                return None
            body = self.rfile.read(length) if length else b""
        if body is None:
            self.close_connection = True
        return body

    def do_GET(self) -> None:  # noqa: N802
        app = self.server.app
        path = urlsplit(self.path).path
        if path == STATS_PATH:
            self._send_json(200, app.stats())
        elif path == EVENTS_PATH:
            self._send_json(200, app.accepted_events())
        else:
            self._send_json(*app._invalid_path())

    def do_POST(self) -> None:  # noqa: N802
        app = self.server.app
        path = urlsplit(self.path).path
        if path not in (HTTP_API_PATH, BATCH_API_PATH):
            raw_limit = _RAW_BODY_SLACK
        else:
            raw_limit = app._byte_limit(path) * _RAW_BODY_FACTOR + _RAW_BODY_SLACK
        raw = self._read_body(raw_limit)
        if path not in (HTTP_API_PATH, BATCH_API_PATH):
            self._send_json(*app._invalid_path())
            return
        if raw is None:
            reply = app._oversize_raw()
        else:
            reply = app._handle_ingest(
                path, raw, self.headers.get("Content-Encoding", "")
            )
        if reply.drop:
            self._drop()
        else:
            self._send_json(reply.status, reply.body)

    def _not_found(self) -> None:
        self._read_body(_RAW_BODY_SLACK)
        self._send_json(*self.server.app._invalid_path())

    do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _not_found  # noqa: N815


class AmplitudeServer:
    """An Amplitude-compatible HTTP server on loopback, run in a daemon thread."""

    def __init__(
        self,
        api_keys: Iterable[str] = ("test-api-key",),
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        faults: FaultConfig | None = None,
        http_max_bytes: int = 1_000_000,
        batch_max_bytes: int = 20_000_000,
        max_events: int = 2000,
        http_eps_per_device: float = 30.0,
        batch_eps_per_device: float = 1000.0,
        throttle_window_secs: float = 1.0,
        daily_quota_per_device: int | None = None,
        silenced_devices: Iterable[str] = (),
    ) -> None:
        self.api_keys = frozenset(api_keys)
        self.host = host
        self.port = port
        self.http_max_bytes = http_max_bytes
        self.batch_max_bytes = batch_max_bytes
        self.max_events = max_events
        self.http_eps_per_device = http_eps_per_device
        self.batch_eps_per_device = batch_eps_per_device
        self.throttle_window_secs = throttle_window_secs
        self.daily_quota_per_device = daily_quota_per_device
        self.silenced_devices = frozenset(silenced_devices)
        self._lock = threading.Lock()
        self._faults = faults if faults is not None else FaultConfig()
        self._rng = random.Random(self._faults.seed)
        self._stop_event = threading.Event()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._clear()

    # Lifecycle

    def start(self) -> AmplitudeServer:
        """Bind the socket and serve in a daemon thread; returns self."""
        if self._httpd is not None:
            return self
        self._stop_event.clear()
        self._httpd = _HTTPServer((self.host, self.port), _Handler, self)
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.02},
            name=f"amplitude-server-{self.port}",
            daemon=True,
        )
        self._thread.start()
        _LOGGER.info("Amplitude-compatible server listening on %s", self.url)
        return self

    def stop(self) -> None:
        """Stop serving, close every connection and join the server's threads."""
        httpd, thread = self._httpd, self._thread
        if httpd is None:
            return
        self._stop_event.set()
        httpd.shutdown()
        httpd.server_close()
        httpd.close_connections(timeout=5.0)
        if thread is not None:
            thread.join(5.0)
        self._httpd = None
        self._thread = None
        _LOGGER.info("Amplitude-compatible server on port %d stopped", self.port)

    def __enter__(self) -> AmplitudeServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """Base URL without a trailing slash, e.g. ``http://127.0.0.1:41234``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def faults(self) -> FaultConfig:
        return self._faults

    @faults.setter
    def faults(self, value: FaultConfig) -> None:
        with self._lock:
            self._faults = value
            self._rng = random.Random(value.seed)

    # Results

    def accepted_events(self) -> list[dict]:
        """Every ingested event (duplicates absorbed), in order, as copies."""
        with self._lock:
            snapshot = json.dumps(self._events)
        return json.loads(snapshot)

    def accepted_count(self) -> int:
        with self._lock:
            return len(self._events)

    def stats(self) -> dict:
        """Request, status, ingestion and connection counts."""
        with self._lock:
            return {
                "requests": self._requests,
                "by_status": dict(self._by_status),
                "accepted": len(self._events),
                "duplicates_absorbed": self._duplicates,
                "dropped_connections": self._dropped,
                "events_received": self._received,
                "connections": self._connections,
            }

    def acceptance_times(self) -> dict[str, float]:
        """``insert_id`` -> ``time.time()`` of its first ingestion."""
        with self._lock:
            return dict(self._accepted_at)

    def reset(self) -> None:
        """Clear events, statistics, the dedup store, throttle windows and quotas."""
        with self._lock:
            self._clear()

    def _clear(self) -> None:
        self._events: list[dict] = []
        self._dedup: set[Any] = set()
        self._accepted_at: dict[str, float] = {}
        self._windows: dict[tuple[str, str, str], _Window] = {}
        self._last_sweep = time.monotonic()
        self._quota_counts: dict[str, int] = {}
        self._requests = 0
        self._by_status: dict[str, int] = {}
        self._duplicates = 0
        self._dropped = 0
        self._received = 0
        self._connections = 0

    # Request handling (called from handler threads)

    def _count_connection(self) -> None:
        with self._lock:
            self._connections += 1

    def _record(self, reply: _Reply) -> _Reply:
        with self._lock:
            self._requests += 1
            if reply.drop:
                self._dropped += 1
            else:
                key = str(reply.status)
                self._by_status[key] = self._by_status.get(key, 0) + 1
        return reply

    def _invalid_path(self) -> tuple[int, dict[str, Any]]:
        reply = self._record(_error(400, "Invalid request path"))
        return reply.status, reply.body

    def _oversize_raw(self) -> _Reply:
        return self._record(_error(413, "Payload too large"))

    def _byte_limit(self, path: str) -> int:
        return self.http_max_bytes if path == HTTP_API_PATH else self.batch_max_bytes

    def _eps_threshold(self, path: str) -> float:
        if path == HTTP_API_PATH:
            return self.http_eps_per_device
        return self.batch_eps_per_device

    def _next_action(self, faults: FaultConfig) -> tuple[str, int]:
        """Pick what to do with a request: scripted status, random fault or none."""
        with self._lock:
            if faults.script:
                status = faults.script.pop(0)
                if status == 0:
                    return "drop", 0
                if status == 200:
                    return "process", 200
                return "status", status
            draw = self._rng.random()
            if draw < faults.server_error_rate:
                return "status", self._rng.choice((500, 502, 503, 504))
            draw -= faults.server_error_rate
            if draw < faults.error_after_ingest_rate:
                return "error_after", self._rng.choice((500, 502, 504))
            draw -= faults.error_after_ingest_rate
            if draw < faults.drop_rate:
                if self._rng.random() < 0.5:
                    return "drop", 0
                return "drop_after", 0
        return "process", 200

    def _handle_ingest(self, path: str, raw: bytes, content_encoding: str) -> _Reply:
        faults = self._faults
        if faults.delay_secs > 0:
            self._stop_event.wait(faults.delay_secs)
        parsed = self._parse(path, raw, content_encoding)
        if isinstance(parsed, _Parsed):
            events = parsed.payload.get("events")
            if isinstance(events, list):
                with self._lock:
                    self._received += len(events)
        action, status = self._next_action(faults)
        if action == "drop":
            reply = _Reply(drop=True)
        elif action == "status":
            reply = self._fault_reply(path, status, parsed)
        else:
            reply = self._process(path, parsed)
            if action == "drop_after":
                reply = _Reply(drop=True)
            elif action == "error_after" and reply.status == 200:
                reply = self._fault_reply(path, status, parsed)
        _LOGGER.debug(
            "%s -> %s (%s)", path, "drop" if reply.drop else reply.status, action
        )
        return self._record(reply)

    def _fault_reply(self, path: str, status: int, parsed: _Parsed | _Reply) -> _Reply:
        if status == 429:
            events = (
                parsed.payload.get("events") if isinstance(parsed, _Parsed) else None
            )
            events = events if isinstance(events, list) else []
            devices: dict[str, int] = {}
            for event in events:
                device = event.get("device_id") if isinstance(event, dict) else None
                if isinstance(device, str):
                    devices[device] = devices.get(device, 0) + 1
            window = self.throttle_window_secs
            return _error(
                429,
                "Too many requests for some devices and users",
                eps_threshold=_number(self._eps_threshold(path)),
                throttled_devices={
                    d: _number(round(n / window, 3)) for d, n in devices.items()
                },
                throttled_users={},
                throttled_events=list(range(len(events))),
                exceeded_daily_quota_devices={},
                exceeded_daily_quota_users={},
            )
        try:
            default = HTTPStatus(status).phrase
        except ValueError:
            default = "Error"
        return _error(status, _FAULT_ERRORS.get(status, default))

    def _parse(self, path: str, raw: bytes, content_encoding: str) -> _Parsed | _Reply:
        """Decompress and parse a body: the JSON object, or a _Reply for an error."""
        encoding = content_encoding.strip().lower()
        limit = self._byte_limit(path)
        if encoding in ("gzip", "x-gzip"):
            try:
                decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
                body = decompressor.decompress(raw, limit + 1)
            except zlib.error:
                return _error(400, "Invalid JSON request body")
            if len(body) <= limit and not decompressor.eof:
                return _error(400, "Invalid JSON request body")
        elif encoding in ("", "identity"):
            body = raw
        else:
            return _error(400, "Invalid JSON request body")
        if not body:
            return _error(400, "Missing request body")
        if len(body) > limit:
            return _error(413, "Payload too large")
        try:
            value = json.loads(body.decode("utf-8"), parse_constant=_reject_constant)
        except (ValueError, RecursionError):
            return _error(400, "Invalid JSON request body")
        if not isinstance(value, dict):
            return _error(400, "Invalid JSON request body")
        return _Parsed(value, len(body))

    def _process(self, path: str, parsed: _Parsed | _Reply) -> _Reply:
        """Apply Amplitude's rules to a parsed body and ingest it when it passes."""
        if isinstance(parsed, _Reply):
            return parsed
        payload_size = parsed.size
        body = parsed.payload
        events = body.get("events")
        if isinstance(events, list) and len(events) > self.max_events:
            return _error(413, "Payload too large")
        api_key = body.get("api_key")
        if api_key is None or api_key == "":
            return _error(
                400, "Request missing required field", missing_field="api_key"
            )
        if not isinstance(api_key, str) or api_key not in self.api_keys:
            shown = api_key if isinstance(api_key, str) else json.dumps(api_key)
            return _error(400, f"Invalid API key: {shown}")
        # An empty list is refused like a missing one: a client never needs to
        # send a request without events.
        if not isinstance(events, list) or not events:
            return _error(400, "Request missing required field", missing_field="events")
        if not all(isinstance(event, dict) for event in events):
            return _error(400, "Invalid event JSON")
        options = body.get("options")
        min_id_length = DEFAULT_MIN_ID_LENGTH
        if options is not None:
            if not isinstance(options, dict):
                return _error(400, "Invalid JSON request body")
            value = options.get("min_id_length")
            if value is not None:
                if not _is_int(value) or value < 0:
                    return _error(400, "Invalid JSON request body")
                min_id_length = value
        problems = validate_events(events, min_id_length)
        if problems:
            return _error(400, "Invalid field values on some events", **problems)
        silenced = self._silenced(path, events)
        if silenced is not None:
            return silenced
        with self._lock:
            throttled = self._throttle(path, events)
            if throttled is not None:
                return throttled
            return self._ingest(path, events, payload_size)

    def _silenced(self, path: str, events: list[dict]) -> _Reply | None:
        if not self.silenced_devices:
            return None
        indexes = [
            index
            for index, event in enumerate(events)
            if event.get("device_id") in self.silenced_devices
        ]
        if not indexes:
            return None
        devices = list(dict.fromkeys(events[index]["device_id"] for index in indexes))
        return _error(
            400,
            "Events silenced for device_id",
            silenced_devices=devices,
            silenced_events=indexes,
            eps_threshold=_number(self._eps_threshold(path)),
            throttled_devices={},
            throttled_events=[],
            exceeded_daily_quota_devices={},
        )

    def _throttle(self, path: str, events: list[dict]) -> _Reply | None:
        """Check throttling and the daily quota; the caller holds the lock.

        Counting rule: the events of an ingested request count in every id's
        window. On a 429 only the throttled ids' events of that request count, so
        a device that keeps hammering stays throttled, while the other ids of the
        same request (which the client resends at once) are not counted twice.
        Requests refused earlier (faults, 400, 413) count nowhere. Windows are kept
        per API; the daily quota counts ingested events of both APIs.
        """
        now = time.monotonic()
        window = self.throttle_window_secs
        oldest = now - window
        self._sweep_windows(now, oldest)
        threshold = self._eps_threshold(path)
        counts: dict[tuple[str, str, str], int] = {}
        for event in events:
            for kind in ("device_id", "user_id"):
                value = event.get(kind)
                if isinstance(value, str):
                    key = (path, kind, value)
                    counts[key] = counts.get(key, 0) + 1
        over: dict[tuple[str, str, str], float] = {}
        for key, count in counts.items():
            current = self._windows.get(key)
            if current is not None:
                current.prune(oldest)
                total = current.total + count
            else:
                total = count
            if total > threshold * window:
                over[key] = round(total / window, 3)
        exceeded: dict[str, int] = {}
        quota = self.daily_quota_per_device
        if quota is not None:
            for (_, kind, value), count in counts.items():
                if kind == "device_id":
                    total = self._quota_counts.get(value, 0) + count
                    if total > quota:
                        exceeded[value] = total
        counted = counts if not over and not exceeded else over
        for key in counted:
            self._windows.setdefault(key, _Window()).add(now, counts[key])
        if not over and not exceeded:
            return None
        throttled_devices = {
            v: _number(e) for (_, k, v), e in over.items() if k == "device_id"
        }
        throttled_users = {
            v: _number(e) for (_, k, v), e in over.items() if k == "user_id"
        }
        indexes = [
            index
            for index, event in enumerate(events)
            if event.get("device_id") in throttled_devices
            or event.get("user_id") in throttled_users
            or event.get("device_id") in exceeded
        ]
        return _error(
            429,
            "Too many requests for some devices and users",
            eps_threshold=_number(threshold),
            throttled_devices=throttled_devices,
            throttled_users=throttled_users,
            throttled_events=indexes,
            exceeded_daily_quota_devices=exceeded,
            exceeded_daily_quota_users={},
        )

    def _sweep_windows(self, now: float, oldest: float) -> None:
        if now - self._last_sweep < max(self.throttle_window_secs, 5.0):
            return
        self._last_sweep = now
        for key in list(self._windows):
            window = self._windows[key]
            window.prune(oldest)
            if not window.entries:
                del self._windows[key]

    def _ingest(self, path: str, events: list[dict], payload_size: int) -> _Reply:
        """Store the events not seen before; the caller holds the lock."""
        now = time.time()
        for event in events:
            insert_id = event.get("insert_id")
            if insert_id is not None:
                if path == HTTP_API_PATH:
                    device = event.get("device_id")
                    owner = (
                        ("device", device) if device else ("user", event.get("user_id"))
                    )
                    key: Any = (owner, insert_id)
                else:
                    key = insert_id
                if key in self._dedup:
                    self._duplicates += 1
                    continue
                self._dedup.add(key)
                self._accepted_at.setdefault(insert_id, now)
            self._events.append(event)
            device = event.get("device_id")
            if self.daily_quota_per_device is not None and isinstance(device, str):
                self._quota_counts[device] = self._quota_counts.get(device, 0) + 1
        return _Reply(
            200,
            {
                "code": 200,
                "events_ingested": len(events),
                "payload_size_bytes": payload_size,
                "server_upload_time": int(now * 1000),
            },
        )


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m devtools.amplitude_server",
        description="Run a local Amplitude-compatible ingestion server.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="default: 127.0.0.1")
    parser.add_argument("--port", type=int, default=8080, help="0 picks a free port")
    parser.add_argument(
        "--api-key",
        action="append",
        dest="api_keys",
        help="accepted API key; repeat for several (default: test-api-key)",
    )
    parser.add_argument("--server-error-rate", type=float, default=0.0)
    parser.add_argument("--error-after-ingest-rate", type=float, default=0.0)
    parser.add_argument("--drop-rate", type=float, default=0.0)
    parser.add_argument("--delay-secs", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--http-max-bytes", type=int, default=1_000_000)
    parser.add_argument("--batch-max-bytes", type=int, default=20_000_000)
    parser.add_argument("--max-events", type=int, default=2000)
    parser.add_argument("--http-eps-per-device", type=float, default=30.0)
    parser.add_argument("--batch-eps-per-device", type=float, default=1000.0)
    parser.add_argument("--throttle-window-secs", type=float, default=1.0)
    parser.add_argument("--daily-quota-per-device", type=int, default=None)
    parser.add_argument(
        "--silenced-device", action="append", dest="silenced_devices", default=[]
    )
    parser.add_argument("--summary-secs", type=float, default=10.0)
    parser.add_argument("--log-level", default="INFO")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the server in the foreground until Ctrl-C or SIGTERM."""
    args = _parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    faults = FaultConfig(
        server_error_rate=args.server_error_rate,
        error_after_ingest_rate=args.error_after_ingest_rate,
        drop_rate=args.drop_rate,
        delay_secs=args.delay_secs,
        seed=args.seed,
    )
    server = AmplitudeServer(
        args.api_keys or ("test-api-key",),
        host=args.host,
        port=args.port,
        faults=faults,
        http_max_bytes=args.http_max_bytes,
        batch_max_bytes=args.batch_max_bytes,
        max_events=args.max_events,
        http_eps_per_device=args.http_eps_per_device,
        batch_eps_per_device=args.batch_eps_per_device,
        throttle_window_secs=args.throttle_window_secs,
        daily_quota_per_device=args.daily_quota_per_device,
        silenced_devices=args.silenced_devices,
    )
    stopping = threading.Event()

    def _on_signal(signum: int, _frame: Any) -> None:
        _LOGGER.info("Received signal %d, stopping", signum)
        stopping.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    server.start()
    print(f"Amplitude-compatible server listening on {server.url}", flush=True)
    last: dict | None = None
    try:
        while not stopping.wait(args.summary_secs):
            current = server.stats()
            if current != last:
                _LOGGER.info(
                    "requests=%d accepted=%d duplicates=%d dropped=%d received=%d "
                    "by_status=%s",
                    current["requests"],
                    current["accepted"],
                    current["duplicates_absorbed"],
                    current["dropped_connections"],
                    current["events_received"],
                    json.dumps(current["by_status"], sort_keys=True),
                )
                last = current
    finally:
        server.stop()
    print(json.dumps(server.stats(), sort_keys=True), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

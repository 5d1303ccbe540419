"""Amplitude's ingestion APIs: hosts by region, API paths, plan limits, request bodies
and the response policy.

Pure functions and constants, no Beam and no network: the delivery DoFn builds on them.
Facts are Amplitude's documented ones (HTTP V2 and Batch Event Upload APIs). The
response policy, :func:`decide`, is the contract's decision table: it turns one answer
into what happens to each event of the request (delivered, dead-lettered, resent now,
after the throttle pause or after a backoff, or split).
"""

from __future__ import annotations

import dataclasses
import http
import json
import logging
from collections.abc import Mapping, Sequence

_LOGGER = logging.getLogger(__name__)

REGION_HOSTS = {
    "us": "https://api2.amplitude.com",
    "eu": "https://api.eu.amplitude.com",
}
API_PATHS = {
    "http": "/2/httpapi",
    "batch": "/batch",
}
# Most events one request may carry, on both APIs.
MAX_EVENTS_PER_REQUEST = 2000
# Largest request body Amplitude accepts, per API (HTTP V2: 1 MB; Batch: 20 MB).
MAX_BODY_BYTES = {
    "http": 1_000_000,
    "batch": 20_000_000,
}
# Pause of throttled ids after a 429: HTTP V2 documents 30 s, Batch gives 15 s.
THROTTLE_PAUSE_SECS = {
    "http": 30.0,
    "batch": 15.0,
}
DEFAULT_MIN_ID_LENGTH = 5


@dataclasses.dataclass(frozen=True)
class PlanLimits:
    """Defaults a plan sets: batch size and client-side rate caps (0 = none)."""

    batch_size: int
    max_requests_per_sec: float
    max_events_per_sec: float


# Amplitude documents rate limits only for Starter; Plus is treated like Starter until
# Amplitude says otherwise.
PLANS = {
    "starter": PlanLimits(
        batch_size=10, max_requests_per_sec=100, max_events_per_sec=1000
    ),
    "plus": PlanLimits(
        batch_size=10, max_requests_per_sec=100, max_events_per_sec=1000
    ),
    "growth": PlanLimits(batch_size=1000, max_requests_per_sec=0, max_events_per_sec=0),
    "enterprise": PlanLimits(
        batch_size=1000, max_requests_per_sec=0, max_events_per_sec=0
    ),
}


def api_url(region: str, api: str, endpoint: str | None = None) -> str:
    """The URL to POST to: ``endpoint`` (or the region's host) plus the API's path."""
    if api not in API_PATHS:
        raise ValueError(f"unknown Amplitude API {api!r}; choose http or batch")
    if endpoint:
        base = endpoint.rstrip("/")
    else:
        if region not in REGION_HOSTS:
            raise ValueError(f"unknown Amplitude region {region!r}; choose us or eu")
        base = REGION_HOSTS[region]
    return base + API_PATHS[api]


@dataclasses.dataclass(frozen=True)
class DeliverySettings:
    """Everything the delivery step needs, resolved from the options (never the key).

    Attributes:
      url: the full URL to POST to.
      api: ``http`` or ``batch``.
      batch_size: events per request.
      max_requests_per_sec: client-side cap of one sender, i.e. of one shard key
        (0 = none).
      max_events_per_sec: client-side cap of one sender, i.e. of one shard key
        (0 = none).
      max_retry_secs: time budget of one batch's retries.
      throttle_pause_secs: pause of throttled events after a 429.
      min_id_length: sent as ``options.min_id_length`` when not 5.
      connect_timeout_secs, read_timeout_secs: HTTP timeouts.
    """

    url: str
    api: str = "http"
    batch_size: int = 1000
    max_requests_per_sec: float = 0.0
    max_events_per_sec: float = 0.0
    max_retry_secs: float = 300.0
    throttle_pause_secs: float = 30.0
    min_id_length: int = DEFAULT_MIN_ID_LENGTH
    connect_timeout_secs: float = 5.0
    read_timeout_secs: float = 30.0

    @property
    def max_body_bytes(self) -> int:
        return MAX_BODY_BYTES[self.api]


def request_options(min_id_length: int) -> dict | None:
    """The body's ``options`` object, or None when Amplitude's default applies."""
    if min_id_length == DEFAULT_MIN_ID_LENGTH:
        return None
    return {"min_id_length": min_id_length}


def request_body(events: Sequence[dict], api_key: str, min_id_length: int) -> dict:
    """The JSON body of one POST to either API."""
    body: dict = {"api_key": api_key, "events": list(events)}
    options = request_options(min_id_length)
    if options is not None:
        body["options"] = options
    return body


def encode_body(body: dict) -> bytes:
    """Compact UTF-8 JSON of a body (or of one event, for :func:`encode_request`)."""
    return _compact_json(body)


def _compact_json(value: object) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def encode_request(
    encoded_events: Sequence[bytes], api_key: str, min_id_length: int
) -> bytes:
    """The encoded body of :func:`request_body` from events encoded one by one.

    Byte for byte ``encode_body(request_body(events, ...))`` when each event was
    encoded with :func:`encode_body`, so a sender that sizes events once can build
    every request, and every part of a split one, without encoding them again.
    """
    parts = [b'{"api_key":', _compact_json(api_key), b',"events":[']
    parts += [b",".join(encoded_events), b"]"]
    options = request_options(min_id_length)
    if options is not None:
        parts += [b',"options":', _compact_json(options)]
    parts.append(b"}")
    return b"".join(parts)


# Response policy: what to do with each event of a request after Amplitude's answer.
#
# Backoff of 408, 5xx, timeouts and connection errors: "full jitter" over a ceiling
# that starts at 0.5 s and doubles per attempt up to 30 s, so the waits are drawn
# from [0, 0.5], [0, 1], [0, 2], [0, 4], [0, 8], [0, 16] s, then [0, 30] s for every
# later attempt. The jitter keeps the shards from retrying in lockstep after an
# outage; the cap keeps a batch retrying often enough within --max_retry_secs.
BACKOFF_INITIAL_SECS = 0.5
BACKOFF_FACTOR = 2.0
BACKOFF_CAP_SECS = 30.0

# Reason kinds of delivery dead letters; each has a counter dead_lettered_<kind>.
INVALID_EVENT = "invalid_event"
REJECTED_BATCH = "rejected_batch"
TOO_LARGE = "too_large"
DAILY_QUOTA = "daily_quota"
RETRIES_EXHAUSTED = "retries_exhausted"
KEY_UNAVAILABLE = "key_unavailable"
UNEXPECTED_ERROR = "unexpected_error"
DEAD_LETTER_KINDS = (
    INVALID_EVENT,
    REJECTED_BATCH,
    TOO_LARGE,
    DAILY_QUOTA,
    RETRIES_EXHAUSTED,
    KEY_UNAVAILABLE,
    UNEXPECTED_ERROR,
)

# Statuses with a row of their own in the decision table (besides 200, 400 and 5xx).
REQUEST_TIMEOUT = 408
PAYLOAD_TOO_LARGE = 413
TOO_MANY_REQUESTS = 429
# Body fields of a 400 that list the indexes of rejected events, and how a reason
# names the problem (the maps go from a field name to indexes).
_EVENT_LIST_FIELDS = (
    ("events_with_invalid_fields", "invalid field {}"),
    ("events_with_missing_fields", "missing field {}"),
    ("events_with_invalid_id_lengths", "invalid id length of {}"),
)
_SILENCED_EVENTS = "silenced_events"
# Longest piece of an answer's text a reason quotes: enough for Amplitude's error
# messages, short enough that a large error page cannot flood logs or dead letters.
_MAX_QUOTED_CHARS = 200
# Amplitude's error for a key it does not know begins so and goes on with the key.
_INVALID_API_KEY = "Invalid API key"
_EU_HINT = (
    "check the key; a project in Amplitude's EU data center needs --amplitude_region eu"
)


@dataclasses.dataclass(frozen=True)
class Rejection:
    """Events of a request to dead-letter, with the reason kind and the reason."""

    indexes: tuple[int, ...]
    kind: str
    reason: str


@dataclasses.dataclass(frozen=True)
class Decision:
    """What to do with each event of one request, by index in that request.

    Every index appears in exactly one place.

    Attributes:
      status: the HTTP status, or None when there was no answer.
      summary: the status and the answer's error in plain words (for logs, and as
        the last reason when the retry budget runs out).
      delivered: events Amplitude accepted.
      rejected: events to dead-letter, grouped by reason.
      resend_now: events to send again at once (the rest of a partly rejected or
        partly throttled request).
      resend_after_pause: throttled events, to send again after the throttle pause.
      split: parts to send again separately (the halves of a too-large request).
      backoff: events to send again after the jittered exponential backoff.
      eps_threshold: the events per second per id that a 429 names, when it does.
    """

    status: int | None
    summary: str
    delivered: tuple[int, ...] = ()
    rejected: tuple[Rejection, ...] = ()
    resend_now: tuple[int, ...] = ()
    resend_after_pause: tuple[int, ...] = ()
    split: tuple[tuple[int, ...], ...] = ()
    backoff: tuple[int, ...] = ()
    eps_threshold: float | None = None


# Share of a 429's per-id rate that one wave of resent events uses: Amplitude averages
# the rate over a window, so waves at the full rate would graze the threshold.
THROTTLE_WAVE_SHARE = 0.8


def throttle_waves(
    events: Sequence[Mapping], indexes: Sequence[int], eps_threshold: float | None
) -> list[tuple[int, ...]]:
    """Spreads throttled events into waves, one throttle pause apart, of at most
    ``THROTTLE_WAVE_SHARE`` of ``eps_threshold`` events per ``device_id`` and per
    ``user_id``.

    A request that carries more events of one id than Amplitude's per-id threshold is
    throttled however long it waits; resending it in such waves lets it through. An
    id's events keep their order across waves. Without a threshold: one wave.
    """
    if not indexes:
        return []
    if not eps_threshold or eps_threshold < 1:
        return [tuple(indexes)]
    limit = max(1, int(eps_threshold * THROTTLE_WAVE_SHARE))
    seen: dict[tuple[str, object], int] = {}
    waves: list[list[int]] = []
    for index in indexes:
        event = events[index]
        keys = [
            ("device_id", event.get("device_id")),
            ("user_id", event.get("user_id")),
        ]
        keys = [key for key in keys if key[1] is not None]
        wave = max((seen.get(key, 0) for key in keys), default=0) // limit
        for key in keys:
            seen[key] = seen.get(key, 0) + 1
        while len(waves) <= wave:
            waves.append([])
        waves[wave].append(index)
    return [tuple(wave) for wave in waves if wave]


def backoff_ceiling_secs(attempt: int) -> float:
    """Longest wait before retry number ``attempt`` (1, 2, ...) of a failed request."""
    exponent = max(0, attempt - 1)
    if exponent >= 16:  # far past the cap; avoids huge powers
        return BACKOFF_CAP_SECS
    return min(BACKOFF_CAP_SECS, BACKOFF_INITIAL_SECS * BACKOFF_FACTOR**exponent)


def backoff_secs(attempt: int, draw: float) -> float:
    """The full-jitter wait before retry ``attempt``; ``draw`` is uniform in [0, 1)."""
    return backoff_ceiling_secs(attempt) * min(max(draw, 0.0), 1.0)


def decide(
    status: int | None,
    body: object,
    events: Sequence[Mapping],
    error: str | None = None,
) -> Decision:
    """Amplitude's answer to one request, turned into what to do with each event.

    Args:
      status: the HTTP status, or None when no answer came (timeout, connection).
      body: the answer's parsed JSON, or None (anything but an object is ignored,
        so a body that is not JSON never breaks the decision).
      events: the events the request carried, in order.
      error: when there was no answer, what went wrong (e.g. ``ReadTimeout``).

    The rows follow the job's contract: 200 delivered; 400 listing events rejects
    those and resends the rest; 400 listing none, 401, 403 and other 4xx reject the
    batch; 413 splits it (a single event is rejected); 429 pauses the throttled
    events, resends the others at once and rejects the events of ids over their
    daily quota; 408, 5xx, timeouts and connection errors back off; any other
    status rejects the batch. Reasons quote of the answer only its ``error`` and
    ``missing_field`` and the field names it lists, each on one line and cut to 200
    characters, and never the rest of an ``Invalid API key`` error, which echoes
    the key.
    """
    count = len(events)
    every = tuple(range(count))
    fields = body if isinstance(body, dict) else {}
    if status is None:
        summary = f"no answer from Amplitude ({_quote(error) or 'unknown error'})"
        return Decision(None, summary, backoff=every)
    error = _answer_error(status, fields)
    summary = f"{status} {error}"
    if 200 <= status < 300:
        return Decision(status, summary, delivered=every)
    if status == REQUEST_TIMEOUT or 500 <= status < 600:
        return Decision(status, summary, backoff=every)
    if status == PAYLOAD_TOO_LARGE:
        if count <= 1:
            reason = f"the event alone is larger than Amplitude accepts ({summary})"
            return Decision(status, summary, rejected=_reject(every, TOO_LARGE, reason))
        half = (count + 1) // 2
        return Decision(status, summary, split=(every[:half], every[half:]))
    if status == TOO_MANY_REQUESTS:
        return _throttled(status, summary, fields, events)
    if status == 400:
        listed = _listed_problems(fields, count)
        if listed:
            return _partly_rejected(status, summary, listed, count)
    if 400 <= status < 500:
        reason = _batch_reason(summary, error, fields)
        return Decision(
            status, summary, rejected=_reject(every, REJECTED_BATCH, reason)
        )
    reason = f"Amplitude answered with an unexpected status ({summary})"
    return Decision(status, summary, rejected=_reject(every, REJECTED_BATCH, reason))


def _quote(text: object) -> str:
    """``text`` on one line and cut to size, for a reason; '' when not a string."""
    if not isinstance(text, str):
        return ""
    line = " ".join(text.split())
    if len(line) > _MAX_QUOTED_CHARS:
        line = line[: _MAX_QUOTED_CHARS - 3] + "..."
    return line


def _answer_error(status: int, fields: Mapping) -> str:
    """The answer's error (else the status's name), without an echoed key."""
    error = _quote(fields.get("error"))
    normalized = error.lower().replace("_", " ")
    if normalized.startswith(_INVALID_API_KEY.lower()):
        return _INVALID_API_KEY
    if error:
        return error
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "unknown status"


def _batch_reason(summary: str, error: str, fields: Mapping) -> str:
    if error == _INVALID_API_KEY:
        return f"Amplitude rejected the API key ({summary}); {_EU_HINT}"
    missing = _quote(fields.get("missing_field"))
    if missing:
        summary = f"{summary}: {missing}"
    return f"Amplitude rejected the batch ({summary})"


def _reject(indexes: Sequence[int], kind: str, reason: str) -> tuple[Rejection, ...]:
    return (Rejection(tuple(indexes), kind, reason),) if indexes else ()


def _valid_indexes(value: object, count: int) -> list[int]:
    """The indexes in a list of the answer that name events of the request."""
    if not isinstance(value, list):
        return []
    return [
        i
        for i in value
        if isinstance(i, int) and not isinstance(i, bool) and 0 <= i < count
    ]


def _listed_problems(fields: Mapping, count: int) -> dict[int, list[str]]:
    """Index -> the problems a 400 lists for that event, in the answer's order."""
    problems: dict[int, list[str]] = {}
    for name, template in _EVENT_LIST_FIELDS:
        by_field = fields.get(name)
        if not isinstance(by_field, dict):
            continue
        for field, indexes in by_field.items():
            problem = template.format(_quote(field) or "(unnamed)")
            for index in _valid_indexes(indexes, count):
                if problem not in problems.setdefault(index, []):
                    problems[index].append(problem)
    for index in _valid_indexes(fields.get(_SILENCED_EVENTS), count):
        problems.setdefault(index, []).append("its device_id is silenced")
    return problems


def _partly_rejected(
    status: int, summary: str, problems: Mapping[int, list[str]], count: int
) -> Decision:
    by_reason: dict[str, list[int]] = {}
    for index in sorted(problems):
        what = ", ".join(problems[index])
        reason = f"Amplitude rejected the event: {what} ({summary})"
        by_reason.setdefault(reason, []).append(index)
    rejected = tuple(
        Rejection(tuple(indexes), INVALID_EVENT, reason)
        for reason, indexes in by_reason.items()
    )
    rest = tuple(i for i in range(count) if i not in problems)
    return Decision(status, summary, rejected=rejected, resend_now=rest)


def _id_set(value: object) -> frozenset[str]:
    """The ids of a ``throttled_*`` or ``exceeded_daily_quota_*`` field."""
    if isinstance(value, dict):
        return frozenset(k for k in value if isinstance(k, str))
    if isinstance(value, list):
        return frozenset(k for k in value if isinstance(k, str))
    return frozenset()


def _throttled(
    status: int, summary: str, fields: Mapping, events: Sequence[Mapping]
) -> Decision:
    """429: quota events rejected, throttled ones paused, the others resent now.

    When the answer names no throttled event (or no usable body came), every event
    not over its quota is paused, so that each 429 either pauses or removes events
    and a batch never spins on immediate resends.
    """
    count = len(events)
    quota_users = _id_set(fields.get("exceeded_daily_quota_users"))
    quota_devices = _id_set(fields.get("exceeded_daily_quota_devices"))
    throttled_users = _id_set(fields.get("throttled_users"))
    throttled_devices = _id_set(fields.get("throttled_devices"))
    listed = set(_valid_indexes(fields.get("throttled_events"), count))
    quota_reasons: dict[str, list[int]] = {}
    paused: list[int] = []
    others: list[int] = []
    for index, event in enumerate(events):
        user_id, device_id = event.get("user_id"), event.get("device_id")
        if user_id in quota_users or device_id in quota_devices:
            which = "user_id" if user_id in quota_users else "device_id"
            reason = (
                f"the daily event quota of the event's {which} is used up ({summary}); "
                "Amplitude accepts its events again once its count over the last "
                "24 hours falls below the quota"
            )
            quota_reasons.setdefault(reason, []).append(index)
        elif (
            index in listed
            or user_id in throttled_users
            or device_id in throttled_devices
        ):
            paused.append(index)
        else:
            others.append(index)
    if not paused and not quota_reasons:
        paused, others = others, []
    rejected = tuple(
        Rejection(tuple(indexes), DAILY_QUOTA, reason)
        for reason, indexes in quota_reasons.items()
    )
    threshold = fields.get("eps_threshold")
    valid_threshold = (
        isinstance(threshold, (int, float))
        and not isinstance(threshold, bool)
        and threshold > 0
    )
    return Decision(
        status,
        summary,
        rejected=rejected,
        resend_now=tuple(others),
        resend_after_pause=tuple(paused),
        eps_threshold=float(threshold) if valid_threshold else None,
    )

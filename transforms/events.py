"""Mapping of Kameleoon exposures to Amplitude events.

Each exposure yields one event per chosen mode:

- ``identify``: an ``$identify`` event that sets ``KAM_EXPERIMENT_<experiment id>`` =
  ``KAM_VARIATION_<variation id>`` and ``KAM_VISITOR_CODE`` on the user.
- ``experiment``: Amplitude Experiment's own exposure event, ``$exposure`` with
  ``flag_key`` and ``variant``.
- ``event``: one custom event (``--exposure_event_type``) that carries the ids as event
  properties and sets the same user properties as ``identify`` in the same event.

Every event gets a deterministic ``insert_id`` so that a redelivered or retried exposure
is deduplicated by Amplitude, and its ids are checked against Amplitude's id rules
before anything is sent: an exposure Amplitude would reject is refused here with a
reason.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from collections.abc import Sequence

from transforms.exposure import Exposure, InvalidExposure, RawMessage

_LOGGER = logging.getLogger(__name__)

EVENT_MODES = ("identify", "experiment", "event")
EXPOSURE_KEYS = ("ids", "keys")
DEFAULT_EXPOSURE_EVENT_TYPE = "Kameleoon Exposure"
DEFAULT_MIN_ID_LENGTH = 5
# Amplitude's limit for string values, ids included.
MAX_STRING_LENGTH = 1024
# Ids Amplitude answers with 400 (amplitude-api.md §2); compared case-insensitively.
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
# Event types Amplitude reserves for itself.
RESERVED_EVENT_TYPES = frozenset(
    {
        "[amplitude] start session",
        "[amplitude] end session",
        "[amplitude] revenue",
        "[amplitude] revenue (verified)",
        "[amplitude] revenue (unverified)",
        "[amplitude] merged user",
        "$identify",
        "$groupidentify",
        "$exposure",
    }
)


@dataclasses.dataclass(frozen=True)
class MappingSettings:
    """How exposures become events.

    Attributes:
      event_modes: the modes, in order; each exposure yields one event per mode.
      exposure_event_type: event type of the ``event`` mode.
      exposure_keys: ``ids`` or ``keys`` (readable keys in ``experiment`` mode).
      visitor_code_as_user_id: put the visitor code in ``user_id`` when the exposure
        has no cross-device id.
      min_id_length: Amplitude's minimum id length (``options.min_id_length``).
    """

    event_modes: tuple[str, ...] = ("identify",)
    exposure_event_type: str = DEFAULT_EXPOSURE_EVENT_TYPE
    exposure_keys: str = "ids"
    visitor_code_as_user_id: bool = False
    min_id_length: int = DEFAULT_MIN_ID_LENGTH

    def __post_init__(self) -> None:
        if not self.event_modes:
            raise ValueError("at least one event mode is needed")
        for mode in self.event_modes:
            if mode not in EVENT_MODES:
                raise ValueError(
                    f"unknown event mode {mode!r}; choose from {', '.join(EVENT_MODES)}"
                )
        if len(set(self.event_modes)) != len(self.event_modes):
            raise ValueError("each event mode may be given once")
        if self.exposure_keys not in EXPOSURE_KEYS:
            raise ValueError(f"exposure_keys must be one of {', '.join(EXPOSURE_KEYS)}")
        if self.min_id_length < 1:
            raise ValueError("min_id_length must be at least 1")
        event_type = self.exposure_event_type
        if not event_type or len(event_type) > MAX_STRING_LENGTH:
            raise ValueError("exposure_event_type must have 1 to 1,024 characters")
        if event_type.lower() in RESERVED_EVENT_TYPES:
            raise ValueError(f"{event_type!r} is an event type Amplitude reserves")


@dataclasses.dataclass(frozen=True, slots=True)
class OutboundEvent:
    """An Amplitude event on its way, with its message (for dead letters)."""

    event: dict
    message: RawMessage
    mode: str = "identify"


def parse_event_modes(value: str | Sequence[str]) -> tuple[str, ...]:
    """Parses ``identify,event`` (or a list of such strings) into a tuple of modes."""
    parts = [value] if isinstance(value, str) else list(value)
    modes = [m.strip() for part in parts for m in part.split(",") if m.strip()]
    return tuple(modes)


def insert_id(exposure: Exposure, mode: str = "identify") -> str:
    """A stable id of the exposure (and of the mode, for every mode but identify).

    The identify event's id depends only on visitor code, experiment, variation and
    time, so options never change it; other modes mix their name in, so the events of
    two modes never collide.
    """
    key = [
        exposure.visitor_code,
        exposure.experiment_id,
        exposure.variation_id,
        exposure.time_ms,
    ]
    if mode != "identify":
        key.insert(0, mode)
    digest = hashlib.sha256(json.dumps(key, ensure_ascii=False).encode("utf-8"))
    return digest.hexdigest()[:32]


def experiment_property(exposure: Exposure) -> str:
    return f"KAM_EXPERIMENT_{exposure.experiment_id}"


def variation_value(exposure: Exposure) -> str:
    return f"KAM_VARIATION_{exposure.variation_id}"


def to_amplitude_events(exposure: Exposure, settings: MappingSettings) -> list[dict]:
    """Returns the exposure's events, one per mode in ``settings.event_modes``.

    Raises:
      InvalidExposure: the exposure's ids break Amplitude's id rules.
    """
    identity = _identity(exposure, settings)
    events = []
    for mode in settings.event_modes:
        event = {"event_type": "", **identity}
        if mode == "identify":
            event["event_type"] = "$identify"
            event["user_properties"] = {"$set": _kameleoon_properties(exposure)}
        elif mode == "experiment":
            use_keys = (
                settings.exposure_keys == "keys"
                and exposure.experiment_key is not None
                and exposure.variation_key is not None
            )
            event["event_type"] = "$exposure"
            event["event_properties"] = {
                "flag_key": exposure.experiment_key
                if use_keys
                else experiment_property(exposure),
                "variant": exposure.variation_key
                if use_keys
                else variation_value(exposure),
            }
        else:
            properties = {
                "experiment_id": exposure.experiment_id,
                "variation_id": exposure.variation_id,
            }
            if exposure.experiment_key is not None:
                properties["experiment_key"] = exposure.experiment_key
            if exposure.variation_key is not None:
                properties["variation_key"] = exposure.variation_key
            event["event_type"] = settings.exposure_event_type
            event["event_properties"] = properties
            event["user_properties"] = {"$set": _kameleoon_properties(exposure)}
        event["insert_id"] = insert_id(exposure, mode)
        events.append(event)
    return events


def _kameleoon_properties(exposure: Exposure) -> dict:
    return {
        experiment_property(exposure): variation_value(exposure),
        "KAM_VISITOR_CODE": exposure.visitor_code,
    }


def _identity(exposure: Exposure, settings: MappingSettings) -> dict:
    if exposure.amplitude_device_id is not None:
        device_id, device_source = exposure.amplitude_device_id, "amplitude_device_id"
    else:
        device_id, device_source = exposure.visitor_code, "visitor_code"
    _check_id("device_id", device_source, device_id, settings.min_id_length)
    identity: dict = {"device_id": device_id}
    if exposure.cross_device_id is not None:
        user_id, user_source = exposure.cross_device_id, "cross_device_id"
    elif settings.visitor_code_as_user_id:
        user_id, user_source = exposure.visitor_code, "visitor_code"
    else:
        user_id = user_source = None
    if user_id is not None:
        _check_id("user_id", user_source, user_id, settings.min_id_length)
        identity["user_id"] = user_id
    if exposure.amplitude_session_id is not None:
        identity["session_id"] = exposure.amplitude_session_id
    identity["time"] = exposure.time_ms
    return identity


def _check_id(field: str, source: str, value: str, min_length: int) -> None:
    """Refuses an id Amplitude would reject; the reason names the field, not the id."""
    if value.lower() in RESERVED_IDS:
        raise InvalidExposure(
            f"{field} (from {source}) is a value Amplitude rejects as an id "
            "(reserved values such as null, none, 0, -1, anonymous, undefined)"
        )
    if len(value) < min_length:
        raise InvalidExposure(
            f"{field} (from {source}) has {len(value)} characters; Amplitude requires "
            f"at least {min_length} (--min_id_length)"
        )
    if len(value) > MAX_STRING_LENGTH:
        raise InvalidExposure(
            f"{field} (from {source}) has {len(value)} characters; Amplitude allows at "
            f"most {MAX_STRING_LENGTH}"
        )

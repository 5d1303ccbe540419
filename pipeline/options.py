"""The job's options: one ``PipelineOptions`` subclass, and their resolution.

Every flag here is also a Flex Template parameter (except the plain
``--amplitude_api_key``), so names and help texts are part of the job's contract.
:func:`resolve` checks the options together and turns them into the settings of each
step, raising :class:`OptionsError` with a message a user can act on.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import math
import os
import re
import urllib.parse
from collections.abc import Sequence

from apache_beam.options.pipeline_options import (
    PipelineOptions,
    StandardOptions,
    _BeamArgumentParser,
)

from transforms import amplitude
from transforms.events import (
    DEFAULT_EXPOSURE_EVENT_TYPE,
    EVENT_MODES,
    EXPOSURE_KEYS,
    MappingSettings,
    parse_event_modes,
)
from transforms.exposure import INPUT_FORMATS

_LOGGER = logging.getLogger(__name__)

API_KEY_ENV = "AMPLITUDE_API_KEY"
SUBSCRIPTION_PATTERN = re.compile(r"^projects/[^/\s]+/subscriptions/[^/\s]+$")
TOPIC_PATTERN = re.compile(r"^projects/[^/\s]+/topics/[^/\s]+$")
SECRET_PATTERN = re.compile(r"^projects/[^/\s]+/secrets/[^/\s]+/versions/[^/\s]+$")
DEFAULT_NUM_SHARDS = 16
DEFAULT_MAX_BUFFERING_SECS = 1.0
DEFAULT_MAX_RETRY_SECS = 300.0
DEFAULT_DEAD_LETTER_PATH = "dead_letters"


class OptionsError(ValueError):
    """Options that do not fit together; the message says how to fix them."""


def str_to_bool(value: str | bool) -> bool:
    """``true``/``false`` (and yes/no, 1/0), as Flex Templates pass booleans."""
    if isinstance(value, bool):
        return value
    lowered = value.strip().lower()
    if lowered in ("true", "yes", "1", "on"):
        return True
    if lowered in ("false", "no", "0", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")


def _positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a whole number >= 1, got {value!r}"
        ) from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {value}")
    return number


def _number(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {value!r}") from None
    if not math.isfinite(number):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {value}")
    return number


def _non_negative_float(value: str) -> float:
    number = _number(value)
    if number < 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {value}")
    return number


def _positive_float(value: str) -> float:
    number = _number(value)
    if number <= 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {value}")
    return number


def unknown_arguments(argv: Sequence[str]) -> list[str]:
    """What in ``argv`` neither this job nor Beam knows, named without values.

    Beam warns about such arguments with their values and goes on; a mistyped
    ``--amplitude_api_key`` would then print the key and run as a preview.
    """
    parser = _BeamArgumentParser(allow_abbrev=False)
    for cls in {str(c): c for c in PipelineOptions.__subclasses__()}.values():
        cls._add_argparse_args(parser)
    _, unknown = parser.parse_known_args(list(argv))
    named = []
    for position, argument in enumerate(unknown):
        if argument.startswith("-"):
            named.append(argument.split("=", 1)[0])
        elif position == 0 or not unknown[position - 1].startswith("-"):
            named.append("a value with no option before it (not shown)")
    return named


class AmplitudeStreamOptions(PipelineOptions):
    """Options of the Kameleoon to Amplitude job."""

    @classmethod
    def _add_argparse_args(cls, parser: argparse.ArgumentParser) -> None:
        source = parser.add_argument_group("input")
        source.add_argument(
            "--input_path",
            help="Bounded run over files matching this glob: JSON Lines (.jsonl, "
            "optionally .gz) or Avro container files (.avro).",
        )
        source.add_argument(
            "--input_subscription",
            help="Streaming run reading projects/P/subscriptions/S "
            "(streaming is set by the job).",
        )
        source.add_argument(
            "--input_topic",
            help="Streaming run reading projects/P/topics/T through a temporary "
            "subscription.",
        )
        source.add_argument(
            "--input_format",
            choices=INPUT_FORMATS,
            help="Message format: json, avro (schemaless datums of the exposure "
            "schema) or dead_letter (dead-letter files read back). Default: by file "
            "extension (.avro is avro), else json.",
        )
        source.add_argument(
            "--avro_schema",
            help="Writer schema (.avsc) of Avro messages, for a topic whose schema "
            "gained fields; it must keep the exposure schema's fields. Default: the "
            "shipped schemas/exposure.avsc.",
        )

        key = parser.add_argument_group("Amplitude")
        key.add_argument(
            "--amplitude_api_key",
            help=f"Amplitude project API key, for local runs (default: the "
            f"{API_KEY_ENV} environment variable). Never logged. On Dataflow use "
            "--amplitude_api_key_secret.",
        )
        key.add_argument(
            "--amplitude_api_key_secret",
            help="Secret Manager version holding the API key, "
            "projects/P/secrets/S/versions/V (or versions/latest); read on the "
            "workers.",
        )
        key.add_argument(
            "--amplitude_region",
            choices=sorted(amplitude.REGION_HOSTS),
            default="us",
            help="Data residency of the Amplitude project: us (api2.amplitude.com) "
            "or eu (api.eu.amplitude.com). Default: us.",
        )
        key.add_argument(
            "--amplitude_api",
            choices=sorted(amplitude.API_PATHS),
            default="http",
            help="http (HTTP V2 API, /2/httpapi) or batch (Batch Event Upload, "
            "/batch). Default: http.",
        )
        key.add_argument(
            "--amplitude_endpoint",
            help="Base URL overriding the region's host (a proxy, or a local server "
            "in tests); the API path is appended.",
        )
        key.add_argument(
            "--amplitude_plan",
            choices=list(amplitude.PLANS),
            default="growth",
            help="The Amplitude plan; sets the default batch size and rate caps "
            "(starter, plus: 10 events, 100 requests/s, 1,000 events/s; growth, "
            "enterprise: 1,000 events, no caps). Default: growth.",
        )

        delivery = parser.add_argument_group("delivery")
        delivery.add_argument(
            "--batch_size",
            type=_positive_int,
            help="Events per request, at most 2,000. Default: by plan.",
        )
        delivery.add_argument(
            "--max_requests_per_sec",
            type=_non_negative_float,
            help="Client-side cap on requests per second of each worker process; "
            "0 = none. Default: by plan (starter, plus: 100).",
        )
        delivery.add_argument(
            "--max_events_per_sec",
            type=_non_negative_float,
            help="Client-side cap on events per second of each worker process; 0 = "
            "none. Default: by plan (starter, plus: 1,000).",
        )
        delivery.add_argument(
            "--max_buffering_secs",
            type=_positive_float,
            default=DEFAULT_MAX_BUFFERING_SECS,
            help="Longest time in seconds a partial batch waits for more events. "
            "Default: 1.",
        )
        delivery.add_argument(
            "--num_shards",
            type=_positive_int,
            default=DEFAULT_NUM_SHARDS,
            help="Keys of the batching step, i.e. parallel senders; a device's events "
            "always share a key. Default: 16.",
        )
        delivery.add_argument(
            "--max_retry_secs",
            type=_non_negative_float,
            default=DEFAULT_MAX_RETRY_SECS,
            help="Time budget in seconds of one batch's retries before its events are "
            "dead-lettered. Default: 300.",
        )
        delivery.add_argument(
            "--throttle_pause_secs",
            type=_non_negative_float,
            help="Pause in seconds of throttled events after a 429. Default: 30 "
            "(http), 15 (batch).",
        )
        delivery.add_argument(
            "--min_id_length",
            type=_positive_int,
            default=amplitude.DEFAULT_MIN_ID_LENGTH,
            help="Amplitude's minimum user_id/device_id length; sent as "
            "options.min_id_length when not 5. Default: 5.",
        )

        mapping = parser.add_argument_group("events")
        mapping.add_argument(
            "--visitor_code_as_user_id",
            type=str_to_bool,
            nargs="?",
            const=True,
            default=False,
            help="Put the visitor code in user_id when the exposure has no "
            "cross-device id (true/false). Default: false.",
        )
        mapping.add_argument(
            "--event_mode",
            default="identify",
            help="Event per exposure: identify ($identify setting "
            "KAM_EXPERIMENT_<id>), experiment ($exposure, Amplitude Experiment's "
            "exposure event) or event (a custom event with the user properties), or a "
            "comma-separated list. Default: identify.",
        )
        mapping.add_argument(
            "--exposure_event_type",
            default=DEFAULT_EXPOSURE_EVENT_TYPE,
            help="Event type of the event mode. Default: Kameleoon Exposure.",
        )
        mapping.add_argument(
            "--exposure_keys",
            choices=EXPOSURE_KEYS,
            default="ids",
            help="ids or keys: with keys, the experiment mode's flag_key and variant "
            "are the readable experiment_key and variation_key where the message has "
            "both. Default: ids.",
        )

        sinks = parser.add_argument_group("output")
        sinks.add_argument(
            "--preview_path",
            help="Preview: send nothing and write each request body that would be "
            "POSTed as a JSON line to this path prefix (stdout when a bounded run has "
            "no key and no preview path).",
        )
        sinks.add_argument(
            "--dead_letter_path",
            default=DEFAULT_DEAD_LETTER_PATH,
            help="Path prefix of the dead letters of a bounded run (JSON Lines). "
            "Default: dead_letters.",
        )
        sinks.add_argument(
            "--dead_letter_topic",
            help="Dead letters of a streaming run, projects/P/topics/D (required for "
            "streaming runs).",
        )


@dataclasses.dataclass(frozen=True)
class JobConfig:
    """The resolved options: what to read, how to map, how to deliver, where to fail."""

    streaming: bool
    input_path: str | None
    input_subscription: str | None
    input_topic: str | None
    input_format: str | None
    avro_schema: str | None
    mapping: MappingSettings
    delivery: amplitude.DeliverySettings
    num_shards: int
    max_buffering_secs: float
    api_key: str | None = dataclasses.field(repr=False, default=None)
    api_key_secret: str | None = None
    preview: bool = False
    preview_path: str | None = None
    dead_letter_path: str = DEFAULT_DEAD_LETTER_PATH
    dead_letter_topic: str | None = None


def resolve(options: PipelineOptions, environ: dict | None = None) -> JobConfig:
    """Checks the options together and resolves plan defaults and key sources.

    Sets ``streaming`` on the options for a Pub/Sub source, and removes a plain key from
    the options so that it travels in no serialized option.

    Raises:
      OptionsError: the options do not fit together.
    """
    environ = os.environ if environ is None else environ
    job = options.view_as(AmplitudeStreamOptions)
    standard = options.view_as(StandardOptions)
    # Take the plain key out of the options before anything can fail, so that it
    # travels in no serialized option even when the options are rejected.
    api_key_option = job.amplitude_api_key
    job.amplitude_api_key = None
    _drop_flag(options, "--amplitude_api_key")

    sources = [
        name
        for name in ("input_path", "input_subscription", "input_topic")
        if getattr(job, name)
    ]
    if len(sources) != 1:
        raise OptionsError(
            "give exactly one input: --input_path (files), --input_subscription or "
            f"--input_topic (Pub/Sub); got {len(sources)}"
        )
    streaming = not job.input_path
    if job.input_path and "://" not in job.input_path:
        # Beam's local file system matches a glob only with a folder part.
        job.input_path = os.path.abspath(job.input_path)
    if job.input_subscription and not SUBSCRIPTION_PATTERN.match(
        job.input_subscription
    ):
        raise OptionsError(
            "--input_subscription must look like projects/P/subscriptions/S"
        )
    if job.input_topic and not TOPIC_PATTERN.match(job.input_topic):
        raise OptionsError("--input_topic must look like projects/P/topics/T")
    if job.dead_letter_topic and not TOPIC_PATTERN.match(job.dead_letter_topic):
        raise OptionsError("--dead_letter_topic must look like projects/P/topics/D")
    if streaming and not job.dead_letter_topic:
        raise OptionsError(
            "a streaming run needs --dead_letter_topic projects/P/topics/D, so that "
            "rejected and undeliverable messages are kept"
        )
    if streaming:
        standard.streaming = True

    secret = job.amplitude_api_key_secret
    if api_key_option and secret:
        raise OptionsError(
            "give either --amplitude_api_key or --amplitude_api_key_secret, not both"
        )
    if secret and not SECRET_PATTERN.match(secret):
        raise OptionsError(
            "--amplitude_api_key_secret must look like "
            "projects/P/secrets/S/versions/V (V may be latest)"
        )
    if api_key_option is not None and not api_key_option.strip():
        raise OptionsError(
            "--amplitude_api_key is empty (an unset shell variable?); give the key, "
            "or leave the option out for a preview"
        )
    api_key = api_key_option or (None if secret else environ.get(API_KEY_ENV) or None)
    # Keys are copied from consoles with stray white space; Amplitude would refuse it.
    api_key = api_key.strip() if api_key else api_key
    runner = (standard.runner or "").lower()
    if api_key and "dataflow" in runner:
        raise OptionsError(
            "a plain API key (--amplitude_api_key or AMPLITUDE_API_KEY) would be "
            "visible in the Dataflow job; store it in Secret Manager and pass "
            "--amplitude_api_key_secret projects/P/secrets/S/versions/V"
        )
    has_key = bool(api_key or secret)
    preview = bool(job.preview_path) or not has_key
    if streaming and not has_key:
        raise OptionsError(
            "a streaming run needs an API key (--amplitude_api_key_secret, "
            f"--amplitude_api_key or {API_KEY_ENV}): without one it would consume "
            "messages and deliver none"
        )
    if streaming and job.preview_path:
        raise OptionsError(
            "--preview_path is for bounded runs: a streaming preview would consume "
            "messages and deliver none"
        )

    plan = amplitude.PLANS[job.amplitude_plan]
    batch_size = job.batch_size or plan.batch_size
    if batch_size > amplitude.MAX_EVENTS_PER_REQUEST:
        raise OptionsError(
            f"--batch_size {batch_size} is above Amplitude's "
            f"{amplitude.MAX_EVENTS_PER_REQUEST:,} events per request"
        )

    def _or_plan(value: float | None, default: float) -> float:
        return default if value is None else value

    shards = job.num_shards
    # The caps hold for each worker process, whatever the number of shards it serves.
    max_rps = _or_plan(job.max_requests_per_sec, plan.max_requests_per_sec)
    max_eps = _or_plan(job.max_events_per_sec, plan.max_events_per_sec)
    throttle_pause = _or_plan(
        job.throttle_pause_secs, amplitude.THROTTLE_PAUSE_SECS[job.amplitude_api]
    )
    try:
        mapping = MappingSettings(
            event_modes=parse_event_modes(job.event_mode),
            exposure_event_type=job.exposure_event_type,
            exposure_keys=job.exposure_keys,
            visitor_code_as_user_id=job.visitor_code_as_user_id,
            min_id_length=job.min_id_length,
        )
        url = amplitude.api_url(
            job.amplitude_region, job.amplitude_api, job.amplitude_endpoint
        )
    except ValueError as error:
        raise OptionsError(str(error)) from None
    if job.amplitude_endpoint:
        endpoint = urllib.parse.urlsplit(job.amplitude_endpoint)
        if (
            endpoint.scheme not in ("http", "https")
            or not endpoint.hostname
            or endpoint.query
            or endpoint.fragment
        ):
            raise OptionsError(
                "--amplitude_endpoint must be an http:// or https:// URL with a host "
                "and no query or fragment, e.g. http://127.0.0.1:8080"
            )
    delivery = amplitude.DeliverySettings(
        url=url,
        api=job.amplitude_api,
        batch_size=batch_size,
        max_requests_per_sec=max_rps,
        max_events_per_sec=max_eps,
        max_retry_secs=job.max_retry_secs,
        throttle_pause_secs=throttle_pause,
        min_id_length=job.min_id_length,
    )
    return JobConfig(
        streaming=streaming,
        input_path=job.input_path,
        input_subscription=job.input_subscription,
        input_topic=job.input_topic,
        input_format=job.input_format,
        avro_schema=job.avro_schema,
        mapping=mapping,
        delivery=delivery,
        num_shards=shards,
        max_buffering_secs=job.max_buffering_secs,
        api_key=api_key,
        api_key_secret=secret,
        preview=preview,
        preview_path=job.preview_path,
        dead_letter_path=job.dead_letter_path,
        dead_letter_topic=job.dead_letter_topic,
    )


def _drop_flag(options: PipelineOptions, flag: str) -> None:
    """Removes ``flag`` (``--flag=value`` or ``--flag value``) from the raw flags.

    Beam keeps the command line in a list shared by every view and re-parses it in
    ``get_all_options``; the list is edited in place so that no view keeps the value.
    """
    flags = getattr(options, "_flags", None)
    if not isinstance(flags, list):
        return
    kept: list[str] = []
    skip_value = False
    for item in flags:
        if skip_value:
            skip_value = False
            continue
        if item == flag:
            skip_value = True
            continue
        if isinstance(item, str) and item.startswith(flag + "="):
            continue
        kept.append(item)
    flags[:] = kept


__all__ = [
    "AmplitudeStreamOptions",
    "EVENT_MODES",
    "JobConfig",
    "OptionsError",
    "resolve",
    "str_to_bool",
]

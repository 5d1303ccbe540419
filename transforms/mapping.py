"""Beam steps that parse messages into exposures and map them to keyed Amplitude events.

Each step has a main output and a ``dead_letter`` output, so that a bad message leaves
with its reason and never stops the pipeline.
"""

import logging
import zlib
from collections.abc import Iterator

import apache_beam as beam

from transforms import METRICS_NAMESPACE
from transforms.dead_letter import DEAD_LETTER_TAG, make_dead_letter
from transforms.events import MappingSettings, OutboundEvent, to_amplitude_events
from transforms.exposure import InvalidExposure, RawMessage, parse_message

_LOGGER = logging.getLogger(__name__)


class ParseExposureFn(beam.DoFn):
    """RawMessage → (RawMessage, Exposure); a message that is no exposure is refused.

    Args:
      input_format: ``json``, ``avro`` or ``dead_letter``. A record read from an Avro
        container file is JSON whatever the format.
      writer_schema, reader_schema: parsed Avro schemas (``transforms.exposure``).
    """

    def __init__(
        self,
        input_format: str,
        writer_schema: dict | None = None,
        reader_schema: dict | None = None,
    ) -> None:
        self._input_format = input_format
        self._writer_schema = writer_schema
        self._reader_schema = reader_schema
        self._parsed = beam.metrics.Metrics.counter(
            METRICS_NAMESPACE, "exposures_parsed"
        )
        self._rejected = beam.metrics.Metrics.counter(
            METRICS_NAMESPACE, "dead_lettered_parse"
        )

    def process(self, message: RawMessage) -> Iterator:
        if message.payload_encoding == "path":
            # A read dead letter fed back: it names a file, it is no exposure.
            self._rejected.inc()
            reason = (
                "this dead letter names a file that could not be read; run the job "
                "with --input_path on that file once it is fixed"
            )
            yield beam.pvalue.TaggedOutput(
                DEAD_LETTER_TAG, make_dead_letter(message, "read", reason)
            )
            return
        input_format = (
            "json" if message.payload_encoding == "json" else self._input_format
        )
        try:
            exposure = parse_message(
                message, input_format, self._writer_schema, self._reader_schema
            )
        except InvalidExposure as error:
            self._rejected.inc()
            yield beam.pvalue.TaggedOutput(
                DEAD_LETTER_TAG, make_dead_letter(message, "parse", error.reason)
            )
            return
        except Exception as error:  # A parser bug must not stop the pipeline either.
            _LOGGER.exception("Unexpected error while parsing a message")
            self._rejected.inc()
            yield beam.pvalue.TaggedOutput(
                DEAD_LETTER_TAG,
                make_dead_letter(
                    message, "parse", f"unexpected error: {type(error).__name__}"
                ),
            )
            return
        self._parsed.inc()
        yield message, exposure


@beam.typehints.with_output_types(tuple[int, OutboundEvent])
class ToAmplitudeEventsFn(beam.DoFn):
    """(RawMessage, Exposure) → (shard key, OutboundEvent), one per event mode.

    The shard is a stable hash of the event's ``device_id`` (CRC-32, never Python's
    ``hash()``, which changes between processes), so that a device's events always share
    a sender and reach Amplitude in order.

    Args:
      settings: how exposures become events.
      num_shards: number of shard keys, i.e. parallel senders.
    """

    def __init__(self, settings: MappingSettings, num_shards: int) -> None:
        self._settings = settings
        self._num_shards = num_shards
        self._events = beam.metrics.Metrics.counter(METRICS_NAMESPACE, "events_mapped")
        self._rejected = beam.metrics.Metrics.counter(
            METRICS_NAMESPACE, "dead_lettered_map"
        )

    def process(self, element: tuple) -> Iterator:
        message, exposure = element
        try:
            events = to_amplitude_events(exposure, self._settings)
        except InvalidExposure as error:
            self._rejected.inc()
            yield beam.pvalue.TaggedOutput(
                DEAD_LETTER_TAG, make_dead_letter(message, "map", error.reason)
            )
            return
        for mode, event in zip(self._settings.event_modes, events, strict=True):
            self._events.inc()
            yield (
                shard_of(event["device_id"], self._num_shards),
                OutboundEvent(event, message, mode),
            )


def shard_of(device_id: str, num_shards: int) -> int:
    """A stable shard in ``[0, num_shards)`` for a device id."""
    return zlib.crc32(device_id.encode("utf-8")) % num_shards

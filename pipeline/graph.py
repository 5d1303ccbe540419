"""The job's graph: read → parse → map → key → batch → deliver, and the dead letters.

Windowing: none. The stream stays in the global window with its default trigger
and no GroupByKey, and batching is ``GroupIntoBatches`` keyed by shard, so that a
full batch is sent the moment it fills and a partial batch at most
``--max_buffering_secs`` (processing time) after its first event, whatever the
watermark does. Nothing is ever late, so nothing is dropped as late; buffered
batches are flushed when the input ends (bounded runs) or when a streaming job is
drained.
"""

import json
import logging
import sys
from collections.abc import Iterator

import apache_beam as beam
from apache_beam.io import fileio
from apache_beam.io.gcp.pubsub import PubsubMessage

from pipeline.options import JobConfig
from transforms import METRICS_NAMESPACE, amplitude
from transforms.dead_letter import (
    DEAD_LETTER_TAG,
    DeadLetter,
    to_json_line,
    to_pubsub_parts,
    without_dead_letter_attributes,
)
from transforms.delivery import PostToAmplitudeFn
from transforms.exposure import RawMessage, load_schema
from transforms.mapping import ParseExposureFn, ToAmplitudeEventsFn
from transforms.read import ReadFileMessagesFn

_LOGGER = logging.getLogger(__name__)


def build(pipeline: beam.Pipeline, config: JobConfig) -> dict[str, beam.PCollection]:
    """Adds the job's steps to ``pipeline``; returns its main PCollections by name."""
    if config.input_path:
        messages, read_failures = _read_files(pipeline, config)
    else:
        messages, read_failures = _read_pubsub(pipeline, config), None
    delivered, dead_letters = (
        messages | "DeliverExposures" >> DeliverExposures(config)
    ).values()
    if read_failures is not None:
        dead_letters = (
            read_failures,
            dead_letters,
        ) | "AllDeadLetters" >> beam.Flatten()
    _write_dead_letters(dead_letters, config)
    return {"messages": messages, "delivered": delivered, "dead_letters": dead_letters}


class DeliverExposures(beam.PTransform):
    """RawMessages → Amplitude; returns ``{"delivered": ..., "dead_letters": ...}``.

    In a preview, ``delivered`` holds the JSON request bodies that would be POSTed.
    """

    def __init__(self, config: JobConfig) -> None:
        super().__init__()
        self._config = config

    def expand(self, messages):
        config = self._config
        input_format = config.input_format or "json"
        reader_schema = load_schema()
        writer_schema = load_schema(config.avro_schema) if config.avro_schema else None
        parsed = messages | "ParseExposures" >> beam.ParDo(
            ParseExposureFn(input_format, writer_schema, reader_schema)
        ).with_outputs(DEAD_LETTER_TAG, main="exposures")
        mapped = parsed.exposures | "MapToAmplitudeEvents" >> beam.ParDo(
            ToAmplitudeEventsFn(config.mapping, config.num_shards)
        ).with_outputs(DEAD_LETTER_TAG, main="events")
        # The buffering timer bounds a partial batch's wait in processing time; a
        # bounded run needs none, as the end of the input flushes every batch.
        buffering = config.max_buffering_secs if config.streaming else None
        batches = mapped.events | "BatchPerShard" >> beam.GroupIntoBatches(
            config.delivery.batch_size, max_buffering_duration_secs=buffering
        )
        failures = [parsed[DEAD_LETTER_TAG], mapped[DEAD_LETTER_TAG]]
        if config.preview:
            delivered = batches | "FormatPreviewBodies" >> beam.ParDo(
                FormatPreviewFn(config.delivery.min_id_length)
            )
        else:
            posted = batches | "PostToAmplitude" >> beam.ParDo(
                PostToAmplitudeFn(
                    config.delivery,
                    api_key=config.api_key,
                    api_key_secret=config.api_key_secret,
                )
            ).with_outputs(DEAD_LETTER_TAG, main="delivered")
            delivered = posted.delivered
            failures.append(posted[DEAD_LETTER_TAG])
        dead_letters = failures | "FlattenDeadLetters" >> beam.Flatten()
        return {"delivered": delivered, "dead_letters": dead_letters}


class FormatPreviewFn(beam.DoFn):
    """A batch → the JSON body that would be POSTed, with the key shown as ``***``."""

    def __init__(self, min_id_length: int) -> None:
        self._min_id_length = min_id_length
        self._bodies = beam.metrics.Metrics.counter(METRICS_NAMESPACE, "preview_bodies")

    def process(self, batch: tuple) -> Iterator[str]:
        _, outbound = batch
        events = [item.event for item in outbound]
        body = amplitude.request_body(events, "***", self._min_id_length)
        self._bodies.inc()
        yield json.dumps(body, ensure_ascii=False)


def _read_files(
    pipeline: beam.Pipeline, config: JobConfig
) -> tuple[beam.PCollection, beam.PCollection]:
    read = (
        pipeline
        | "MatchInputFiles" >> fileio.MatchFiles(config.input_path)
        | "FilePaths" >> beam.Map(lambda metadata: metadata.path)
        | "SpreadFiles" >> beam.Reshuffle()
        | "ReadFileMessages"
        >> beam.ParDo(ReadFileMessagesFn(config.input_format)).with_outputs(
            DEAD_LETTER_TAG, main="messages"
        )
    )
    return read.messages, read[DEAD_LETTER_TAG]


def _read_pubsub(pipeline: beam.Pipeline, config: JobConfig) -> beam.PCollection:
    if config.input_subscription:
        source = beam.io.ReadFromPubSub(
            subscription=config.input_subscription, with_attributes=True
        )
    else:
        source = beam.io.ReadFromPubSub(topic=config.input_topic, with_attributes=True)
    return (
        pipeline
        | "ReadFromPubSub" >> source
        | "ToRawMessages" >> beam.Map(_from_pubsub).with_output_types(RawMessage)
    )


def _from_pubsub(message: PubsubMessage) -> RawMessage:
    # A message fed back from the dead-letter topic carries stage, reason, status and
    # failed_at; they describe the old failure, not this message, so they are dropped.
    return RawMessage(
        message.data or b"", without_dead_letter_attributes(message.attributes)
    )


def _write_dead_letters(dead_letters: beam.PCollection, config: JobConfig) -> None:
    if config.dead_letter_topic:
        (
            dead_letters
            | "ToDeadLetterMessages" >> beam.Map(_to_pubsub_message)
            | "PublishDeadLetters"
            >> beam.io.WriteToPubSub(config.dead_letter_topic, with_attributes=True)
        )
    else:
        (
            dead_letters
            | "ToDeadLetterLines" >> beam.Map(to_json_line)
            | "WriteDeadLetters"
            >> beam.io.WriteToText(config.dead_letter_path, num_shards=1)
        )


def _to_pubsub_message(dead_letter: DeadLetter) -> PubsubMessage:
    data, attributes = to_pubsub_parts(dead_letter)
    return PubsubMessage(data, attributes)


def write_preview(delivered: beam.PCollection, config: JobConfig) -> None:
    """Writes preview bodies to ``--preview_path``, or to stdout when none is given."""
    if config.preview_path:
        delivered | "WritePreview" >> beam.io.WriteToText(
            config.preview_path, num_shards=1
        )
    else:
        delivered | "PrintPreview" >> beam.ParDo(_PrintFn())


class _PrintFn(beam.DoFn):
    def process(self, line: str) -> Iterator[None]:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()
        return iter(())

"""Reading exposure messages from files, as bytes, so that no bad line stops a job.

JSON Lines files (``.jsonl``, optionally compressed, e.g. ``.jsonl.gz``) yield one
message per non-blank line; Avro container files (``.avro``) one message per record,
kept as the record's JSON; dead-letter files (``--input_format dead_letter``) the
messages their records kept. A file that cannot be read yields one dead letter
(stage ``read``) that names it, and the job goes on with the other files.
"""

import gzip
import json
import logging
from collections.abc import Iterator

import apache_beam as beam
import fastavro
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from transforms import METRICS_NAMESPACE
from transforms.dead_letter import (
    DEAD_LETTER_TAG,
    InvalidDeadLetterRecord,
    make_dead_letter,
    message_from_record_line,
)
from transforms.exposure import RawMessage

_LOGGER = logging.getLogger(__name__)


def is_avro_file(path: str) -> bool:
    return path.lower().endswith(".avro")


def _open_lines(path: str):
    """Opens a lines file, decompressing by extension.

    Gzip goes through Python's own reader, which raises on a file cut short; Beam's
    decompressor would end such a file early without a word.
    """
    if path.lower().endswith(".gz"):
        raw = FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED)
        return gzip.GzipFile(fileobj=raw, mode="rb")
    return FileSystems.open(path)


class ReadFileMessagesFn(beam.DoFn):
    """Reads one file (a path) into RawMessages; unreadable parts become dead letters.

    Args:
      input_format: ``json``, ``avro`` or ``dead_letter``; Avro container files are
        recognised by their ``.avro`` extension whatever the format.
    """

    def __init__(self, input_format: str | None) -> None:
        self._input_format = input_format
        self._messages = beam.metrics.Metrics.counter(
            METRICS_NAMESPACE, "messages_read"
        )
        self._failed = beam.metrics.Metrics.counter(
            METRICS_NAMESPACE, "dead_lettered_read"
        )

    def process(self, path: str) -> Iterator:
        count = 0
        try:
            if is_avro_file(path):
                lines = self._avro_records(path)
            else:
                lines = self._lines(path)
            for item in lines:
                count += 1
                yield item
        except (
            Exception
        ) as error:  # Any failure of a file is a dead letter, not a crash.
            _LOGGER.error(
                "Could not read %s past message %d: %s",
                path,
                count,
                type(error).__name__,
            )
            self._failed.inc()
            yield beam.pvalue.TaggedOutput(
                DEAD_LETTER_TAG,
                make_dead_letter(
                    RawMessage(path.encode("utf-8"), None, "path"),
                    "read",
                    f"could not read the file past message {count}: "
                    f"{type(error).__name__}: {error}",
                ),
            )
        self._messages.inc(count)

    def _lines(self, path: str) -> Iterator:
        with _open_lines(path) as handle:
            # Compressed files offer readline() but no iteration.
            for raw in iter(handle.readline, b""):
                line = raw.rstrip(b"\r\n")
                if not line.strip():
                    continue
                if self._input_format != "dead_letter":
                    yield RawMessage(line)
                    continue
                try:
                    yield message_from_record_line(line)
                except InvalidDeadLetterRecord as error:
                    self._failed.inc()
                    yield beam.pvalue.TaggedOutput(
                        DEAD_LETTER_TAG,
                        make_dead_letter(RawMessage(line), "read", str(error)),
                    )

    @staticmethod
    def _avro_records(path: str) -> Iterator:
        with FileSystems.open(path, compression_type="uncompressed") as handle:
            for record in fastavro.reader(handle):
                data = json.dumps(record, ensure_ascii=False, default=str)
                yield RawMessage(data.encode("utf-8"), None, "json")

"""The batching bound of the streaming job, on a TestStream.

The job's own composite, ``DeliverExposures``, runs in streaming mode on the
BundleBasedDirectRunner as a preview (each batch becomes one request body), fed by a
TestStream of exposure messages. Its ``GroupIntoBatches`` reads the runner's test clock,
so that the TestStream's processing-time advances drive the buffering timer exactly as
wall time drives it in a real run:

- a full batch comes out in the same step as its last event, before any
  processing-time advance;
- a partial batch comes out once processing time passes ``--max_buffering_secs``
  after its first event, and not before;
- whatever is still buffered comes out when the watermark reaches infinity (the end
  of a TestStream, or a drain).

The bodies carry the timestamp of the step that emitted them: a full batch has its
last event's, a buffering-timer flush the timer's (its first event's processing time
plus ``max_buffering_secs``), an end-of-window flush the global window's end.
"""

from __future__ import annotations

import dataclasses
import json
import threading

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.direct import clock as direct_clock
from apache_beam.runners.direct import direct_runner
from apache_beam.testing import test_stream
from apache_beam.transforms.window import GlobalWindow, TimestampedValue

from pipeline.graph import DeliverExposures
from pipeline.options import JobConfig, resolve
from transforms.exposure import RawMessage
from transforms.mapping import shard_of

BATCH_SIZE = 5
MAX_BUFFERING_SECS = 2.0
END_OF_WINDOW = GlobalWindow().end
BASE_TIME_MS = 1_796_402_461_000


class RunnerTestClock(direct_clock.TestClock):
    """The runner's test clock, remembered so that GroupIntoBatches can read it."""

    current: direct_clock.TestClock | None = None

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        RunnerTestClock.current = self


def runner_time() -> float:
    """Processing time as the runner sees it: the TestStream's advances."""
    assert RunnerTestClock.current is not None, "the runner made no test clock"
    return RunnerTestClock.current.time()


@pytest.fixture
def batching_calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple]:
    """Gives the graph's GroupIntoBatches the runner's clock; records its arguments."""
    calls: list[tuple] = []
    original = beam.GroupIntoBatches

    class ClockedGroupIntoBatches(original):
        def __init__(self, batch_size, max_buffering_duration_secs=None, clock=None):
            calls.append((batch_size, max_buffering_duration_secs))
            super().__init__(batch_size, max_buffering_duration_secs, runner_time)

    monkeypatch.setattr(beam, "GroupIntoBatches", ClockedGroupIntoBatches)
    monkeypatch.setattr(direct_runner, "TestClock", RunnerTestClock)
    monkeypatch.setattr(RunnerTestClock, "current", None)
    return calls


def streaming_config(*extra: str) -> JobConfig:
    """The configuration of a streaming run, as a preview (nothing is sent)."""
    config = resolve(
        PipelineOptions(
            [
                "--input_subscription=projects/kam-local/subscriptions/exposures",
                "--dead_letter_topic=projects/kam-local/topics/exposures-dead-letter",
                "--amplitude_api_key=test-api-key",
                f"--batch_size={BATCH_SIZE}",
                f"--max_buffering_secs={MAX_BUFFERING_SECS}",
                *extra,
            ]
        ),
        environ={},
    )
    assert config.streaming
    return dataclasses.replace(config, preview=True, api_key=None)


def exposure(visitor_code: str, number: int, second: int) -> TimestampedValue:
    """An exposure message with event time ``second`` (seconds)."""
    payload = {
        "visitor_code": visitor_code,
        "experiment_id": 241398,
        "variation_id": 912345,
        "timestamp": BASE_TIME_MS + number,
    }
    return TimestampedValue(RawMessage(json.dumps(payload).encode("utf-8")), second)


# What the pipeline emitted. The runner runs in this process; assert_that is not
# used because its own grouping may fire before an end-of-window flush arrives.
_EMITTED: list[tuple] = []
_EMITTED_LOCK = threading.Lock()


class RecordBatch(beam.DoFn):
    """Records a request body as (device ids, number of events, its timestamp)."""

    def process(self, body: str, timestamp=beam.DoFn.TimestampParam):
        events = json.loads(body)["events"]
        devices = ",".join(sorted({event["device_id"] for event in events}))
        with _EMITTED_LOCK:
            _EMITTED.append(("batch", devices, len(events), timestamp))
        return iter(())


class RecordDeadLetter(beam.DoFn):
    def process(self, dead_letter: object):
        with _EMITTED_LOCK:
            _EMITTED.append(("dead letter", dead_letter))
        return iter(())


def run_stream(stream: test_stream.TestStream, config: JobConfig) -> list[tuple]:
    """Runs the stream through DeliverExposures; returns the batches, sorted."""
    with _EMITTED_LOCK:
        _EMITTED.clear()
    options = PipelineOptions([], runner="BundleBasedDirectRunner", streaming=True)
    pipeline = beam.Pipeline(options=options)
    outputs = pipeline | stream | DeliverExposures(config)
    _ = outputs["delivered"] | "RecordBatches" >> beam.ParDo(RecordBatch())
    _ = outputs["dead_letters"] | "RecordDeadLetters" >> beam.ParDo(RecordDeadLetter())
    pipeline.run().wait_until_finish()
    with _EMITTED_LOCK:
        emitted = list(_EMITTED)
    assert [item for item in emitted if item[0] != "batch"] == []
    return sorted((item[1:] for item in emitted), key=lambda item: item[2])


def test_full_partial_and_final_batches(batching_calls: list[tuple]) -> None:
    stream = (
        test_stream.TestStream(coder=beam.coders.PickleCoder())
        .advance_watermark_to(0)
        # A full batch: out at once, with its fifth event's timestamp.
        .add_elements([exposure("visitor-a", n, 10 + n) for n in range(5)])
        # Two events start a partial batch at processing time 0; its timer is at 2.
        .add_elements([exposure("visitor-a", n, 20 + n) for n in range(5, 7)])
        # Before the bound nothing is flushed: a third event joins the same batch.
        .advance_processing_time(MAX_BUFFERING_SECS - 0.5)
        .add_elements([exposure("visitor-a", 7, 30)])
        # Past the bound the partial batch of three comes out.
        .advance_processing_time(1.0)
        # A last event starts a new batch (timer at 4.5) that only the end flushes.
        .add_elements([exposure("visitor-a", 8, 40)])
        .advance_processing_time(MAX_BUFFERING_SECS - 0.5)
        .advance_watermark_to_infinity()
    )
    assert run_stream(stream, streaming_config("--num_shards=1")) == [
        ("visitor-a", 3, MAX_BUFFERING_SECS),
        ("visitor-a", 5, 14),
        ("visitor-a", 1, END_OF_WINDOW),
    ]
    assert batching_calls == [(BATCH_SIZE, MAX_BUFFERING_SECS)]


def test_partial_batch_waits_for_the_end_without_a_time_advance(
    batching_calls: list[tuple],
) -> None:
    stream = (
        test_stream.TestStream(coder=beam.coders.PickleCoder())
        .advance_watermark_to(0)
        .add_elements([exposure("visitor-a", n, 10 + n) for n in range(7)])
        .advance_watermark_to_infinity()
    )
    assert run_stream(stream, streaming_config("--num_shards=1")) == [
        ("visitor-a", 5, 14),
        ("visitor-a", 2, END_OF_WINDOW),
    ]
    assert batching_calls == [(BATCH_SIZE, MAX_BUFFERING_SECS)]


def test_each_shard_has_its_own_batch_and_timer(batching_calls: list[tuple]) -> None:
    shards = 2
    first, second = "visitor-a", "visitor-d"
    assert shard_of(first, shards) != shard_of(second, shards)
    stream = (
        test_stream.TestStream(coder=beam.coders.PickleCoder())
        .advance_watermark_to(0)
        # The first shard's batch starts at processing time 0 (timer at 2) ...
        .add_elements([exposure(first, n, 10 + n) for n in range(3)])
        .advance_processing_time(1.0)
        # ... the second's at 1 (timer at 3); only the first is due at 2.5.
        .add_elements([exposure(second, n, 20 + n) for n in range(4)])
        .advance_processing_time(1.5)
        # Filling the second shard's batch sends it at once.
        .add_elements([exposure(second, 4, 30)])
        .advance_watermark_to_infinity()
    )
    assert run_stream(stream, streaming_config(f"--num_shards={shards}")) == [
        (first, 3, MAX_BUFFERING_SECS),
        (second, 5, 30),
    ]


def test_a_bounded_run_has_no_buffering_timer(batching_calls: list[tuple]) -> None:
    config = dataclasses.replace(streaming_config(), streaming=False)
    pipeline = beam.Pipeline(
        options=PipelineOptions([], runner="BundleBasedDirectRunner")
    )
    _ = pipeline | beam.Create([]) | DeliverExposures(config)
    assert batching_calls == [(BATCH_SIZE, None)]

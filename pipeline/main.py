"""Entry point of the Kameleoon to Amplitude job: parse options, build the graph, run.

Bounded run over files (no key: a preview that prints the request bodies)::

    python -m pipeline --input_path samples/exposures.jsonl

Streaming run on the Pub/Sub emulator (see the README for the set-up)::

    PUBSUB_EMULATOR_HOST=127.0.0.1:8085 python -m pipeline \\
        --input_subscription projects/kam-local/subscriptions/exposures \\
        --dead_letter_topic projects/kam-local/topics/exposures-dead-letter \\
        --amplitude_api_key ... --amplitude_endpoint http://127.0.0.1:8080

On Dataflow add ``--runner DataflowRunner --project ... --region ...
--temp_location gs://... --setup_file ./setup.py`` and use
``--amplitude_api_key_secret``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.runners.runner import PipelineResult

from pipeline import graph, local_pubsub
from pipeline.options import (
    AmplitudeStreamOptions,
    JobConfig,
    OptionsError,
    resolve,
    unknown_arguments,
)
from transforms import METRICS_NAMESPACE
from transforms.exposure import check_writer_schema, load_schema

_LOGGER = logging.getLogger(__name__)

# Beam's default DirectRunner would try Prism (a binary downloaded at run time) and, for
# GroupIntoBatches, falls back to its bundle-based runner, which mishandles bounded
# GroupIntoBatches. These runners work offline and run each kind of job correctly.
DEFAULT_BOUNDED_RUNNER = "FnApiRunner"
DEFAULT_STREAMING_RUNNER = "BundleBasedDirectRunner"


def help_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline",
        description="Delivers Kameleoon experiment exposures to Amplitude within "
        "seconds. Beam's own options (--runner, --project, --region, "
        "--temp_location, ...) are accepted as well.",
    )
    AmplitudeStreamOptions._add_argparse_args(parser)
    return parser


def run(argv: Sequence[str] | None = None) -> tuple[PipelineResult, JobConfig]:
    """Builds and starts the job; returns at once with its result and configuration."""
    argv = list(sys.argv[1:] if argv is None else argv)
    unknown = unknown_arguments(argv)
    if unknown:
        raise OptionsError(
            f"unknown argument(s): {', '.join(unknown)}; see python -m pipeline --help"
        )
    options = PipelineOptions(argv)
    config = resolve(options)
    standard = options.view_as(StandardOptions)
    if not standard.runner:
        standard.runner = (
            DEFAULT_STREAMING_RUNNER if config.streaming else DEFAULT_BOUNDED_RUNNER
        )
    if config.streaming and local_pubsub.is_direct_runner(standard.runner):
        # The DirectRunner's Pub/Sub pull blocks ~30 s on an idle subscription, during
        # which no batching timer fires; short pulls keep partial batches on time.
        local_pubsub.install_fast_local_pull()
        try:
            local_pubsub.check_resources(
                config.input_subscription,
                config.input_topic,
                config.dead_letter_topic,
            )
        except local_pubsub.MissingPubSubResource as error:
            raise OptionsError(str(error)) from None
    if (
        config.input_path
        and not FileSystems.match([config.input_path])[0].metadata_list
    ):
        raise OptionsError(f"no file matches --input_path {config.input_path}")
    if config.avro_schema:
        try:
            check_writer_schema(load_schema(config.avro_schema))
        except (OSError, ValueError) as error:
            raise OptionsError(f"--avro_schema {config.avro_schema}: {error}") from None
    _LOGGER.info(
        "Starting a %s run: %s, API %s, batch size %d, %d shards, buffering %.3g s, "
        "modes %s%s",
        "streaming" if config.streaming else "bounded",
        "preview" if config.preview else "delivery",
        config.delivery.api,
        config.delivery.batch_size,
        config.num_shards,
        config.max_buffering_secs,
        ",".join(config.mapping.event_modes),
        ", key from Secret Manager" if config.api_key_secret else "",
    )
    pipeline = beam.Pipeline(options=options)
    outputs = graph.build(pipeline, config)
    if config.preview:
        graph.write_preview(outputs["delivered"], config)
    return pipeline.run(), config


def summarize(result: PipelineResult) -> dict[str, int]:
    """The job's counters by name (committed values where the runner has them)."""
    query = result.metrics().query(MetricsFilter().with_namespace(METRICS_NAMESPACE))
    totals: dict[str, int] = {}
    for counter in query["counters"]:
        value = (
            counter.committed if counter.committed is not None else counter.attempted
        )
        totals[counter.key.metric.name] = totals.get(counter.key.metric.name, 0) + (
            value or 0
        )
    return totals


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "-h" in argv or "--help" in argv:
        help_parser().print_help()
        return 0
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # Beam notes every string type hint it cannot resolve at INFO; that is noise here.
    logging.getLogger("apache_beam.typehints.native_type_compatibility").setLevel(
        logging.WARNING
    )
    try:
        result, config = run(argv)
    except OptionsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    runner = (PipelineOptions(argv).view_as(StandardOptions).runner or "").lower()
    if "dataflow" in runner:
        # Launched on Dataflow (or as a Flex Template): the job runs there.
        return 0
    result.wait_until_finish()
    if not config.streaming:
        totals = summarize(result)
        _LOGGER.info(
            "Done: %d messages read, %d events delivered, %d preview bodies, "
            "%d dead letters (%s)",
            totals.get("messages_read", 0),
            totals.get("events_delivered", 0),
            totals.get("preview_bodies", 0),
            sum(v for k, v in totals.items() if k.startswith("dead_lettered_")),
            config.dead_letter_path + "-*",
        )
    return 0

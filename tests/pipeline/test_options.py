"""Tests of the job's options and of their resolution into a JobConfig."""

from __future__ import annotations

import os
import pickle

import pytest
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

from pipeline.options import (
    AmplitudeStreamOptions,
    JobConfig,
    OptionsError,
    resolve,
    str_to_bool,
)
from transforms.events import MappingSettings

KEY = "k3y-0123456789abcdef0123456789ab"
ENV_KEY = "env-fedcba9876543210fedcba987654"
SECRET = "projects/p/secrets/amplitude/versions/3"
SUBSCRIPTION = "projects/p/subscriptions/exposures"
TOPIC = "projects/p/topics/exposures"
DEAD_TOPIC = "projects/p/topics/dead"
FILES = ["--input_path=samples/*.jsonl"]
STREAM = [f"--input_subscription={SUBSCRIPTION}", f"--dead_letter_topic={DEAD_TOPIC}"]


def options(*flags: str) -> PipelineOptions:
    return PipelineOptions(list(flags))


def config(*flags: str, environ: dict | None = None) -> JobConfig:
    return resolve(options(*flags), environ={} if environ is None else environ)


def error(*flags: str, environ: dict | None = None) -> str:
    with pytest.raises(OptionsError) as caught:
        config(*flags, environ=environ)
    return str(caught.value)


# --- inputs and streaming ---------------------------------------------------------


def test_bounded_run_defaults() -> None:
    result = config(*FILES)
    assert result.streaming is False
    # A relative glob is made absolute: Beam's local file system matches a glob
    # only with a folder part.
    assert (result.input_path, result.input_subscription, result.input_topic) == (
        os.path.abspath("samples/*.jsonl"),
        None,
        None,
    )
    assert (result.input_format, result.avro_schema) == (None, None)
    assert result.mapping == MappingSettings()
    assert (result.num_shards, result.max_buffering_secs) == (16, 1.0)
    assert (result.dead_letter_path, result.dead_letter_topic) == ("dead_letters", None)
    assert (result.api_key, result.api_key_secret) == (None, None)
    assert (result.preview, result.preview_path) == (True, None)
    delivery = result.delivery
    assert delivery.url == "https://api2.amplitude.com/2/httpapi"
    assert (delivery.api, delivery.batch_size) == ("http", 1000)
    assert (delivery.max_requests_per_sec, delivery.max_events_per_sec) == (0, 0)
    assert (delivery.max_retry_secs, delivery.throttle_pause_secs) == (300.0, 30.0)
    assert delivery.min_id_length == 5


@pytest.mark.parametrize(
    "flags, count",
    [
        ([], 0),
        ([*FILES, f"--input_subscription={SUBSCRIPTION}"], 2),
        ([*FILES, f"--input_topic={TOPIC}"], 2),
        ([f"--input_subscription={SUBSCRIPTION}", f"--input_topic={TOPIC}"], 2),
        ([*FILES, f"--input_subscription={SUBSCRIPTION}", f"--input_topic={TOPIC}"], 3),
    ],
)
def test_exactly_one_input(flags: list, count: int) -> None:
    assert error(*flags, f"--dead_letter_topic={DEAD_TOPIC}") == (
        "give exactly one input: --input_path (files), --input_subscription or "
        f"--input_topic (Pub/Sub); got {count}"
    )


def test_bounded_run_does_not_set_streaming() -> None:
    opts = options(*FILES)
    resolve(opts, environ={})
    assert not opts.view_as(StandardOptions).streaming


@pytest.mark.parametrize(
    "source",
    [f"--input_subscription={SUBSCRIPTION}", f"--input_topic={TOPIC}"],
)
def test_pubsub_input_sets_streaming(source: str) -> None:
    opts = options(
        source,
        f"--dead_letter_topic={DEAD_TOPIC}",
        f"--amplitude_api_key_secret={SECRET}",
    )
    result = resolve(opts, environ={})
    assert result.streaming is True
    assert opts.view_as(StandardOptions).streaming is True
    assert result.dead_letter_topic == DEAD_TOPIC
    assert result.preview is False


@pytest.mark.parametrize(
    "flag, message",
    [
        ("--input_subscription=exposures", "--input_subscription must look like"),
        ("--input_subscription=projects/p/topics/t", "--input_subscription must look"),
        ("--input_topic=projects/p/subscriptions/s", "--input_topic must look like"),
        ("--input_topic=projects/p/topics/t/x", "--input_topic must look like"),
    ],
)
def test_pubsub_names_are_checked(flag: str, message: str) -> None:
    assert error(flag, f"--dead_letter_topic={DEAD_TOPIC}").startswith(message)


def test_dead_letter_topic_name_is_checked() -> None:
    assert error(*FILES, "--dead_letter_topic=dead") == (
        "--dead_letter_topic must look like projects/P/topics/D"
    )


@pytest.mark.parametrize(
    "source", [f"--input_subscription={SUBSCRIPTION}", f"--input_topic={TOPIC}"]
)
def test_streaming_needs_a_dead_letter_topic(source: str) -> None:
    assert error(source, f"--amplitude_api_key_secret={SECRET}") == (
        "a streaming run needs --dead_letter_topic projects/P/topics/D, so that "
        "rejected and undeliverable messages are kept"
    )


def test_bounded_run_may_use_a_dead_letter_topic() -> None:
    assert config(*FILES, f"--dead_letter_topic={DEAD_TOPIC}").dead_letter_topic == (
        DEAD_TOPIC
    )


def test_input_format_schema_and_paths_are_passed_on() -> None:
    result = config(
        *FILES,
        "--input_format=dead_letter",
        "--avro_schema=schemas/v2.avsc",
        "--dead_letter_path=out/dead",
        "--preview_path=out/preview",
    )
    assert (result.input_format, result.avro_schema) == (
        "dead_letter",
        "schemas/v2.avsc",
    )
    assert (result.dead_letter_path, result.preview_path) == ("out/dead", "out/preview")


# --- key sources ------------------------------------------------------------------


def test_both_key_options_are_an_error() -> None:
    assert error(
        *FILES, f"--amplitude_api_key={KEY}", f"--amplitude_api_key_secret={SECRET}"
    ) == ("give either --amplitude_api_key or --amplitude_api_key_secret, not both")


def test_plain_key_option() -> None:
    result = config(*FILES, f"--amplitude_api_key={KEY}")
    assert (result.api_key, result.api_key_secret, result.preview) == (KEY, None, False)


def test_env_key_used_when_neither_option_is_given() -> None:
    result = config(*FILES, environ={"AMPLITUDE_API_KEY": ENV_KEY})
    assert (result.api_key, result.preview) == (ENV_KEY, False)


def test_key_option_wins_over_env() -> None:
    result = config(
        *FILES, f"--amplitude_api_key={KEY}", environ={"AMPLITUDE_API_KEY": ENV_KEY}
    )
    assert result.api_key == KEY


def test_env_key_is_ignored_with_a_secret() -> None:
    result = config(
        *FILES,
        f"--amplitude_api_key_secret={SECRET}",
        environ={"AMPLITUDE_API_KEY": ENV_KEY},
    )
    assert (result.api_key, result.api_key_secret, result.preview) == (
        None,
        SECRET,
        False,
    )


def test_empty_env_key_is_no_key() -> None:
    result = config(*FILES, environ={"AMPLITUDE_API_KEY": ""})
    assert (result.api_key, result.preview) == (None, True)


@pytest.mark.parametrize(
    "secret",
    [
        "projects/p/secrets/s/versions/latest",
        "projects/my-project/secrets/amplitude-key/versions/12",
        SECRET,
    ],
)
def test_secret_names(secret: str) -> None:
    assert (
        config(*FILES, f"--amplitude_api_key_secret={secret}").api_key_secret == secret
    )


@pytest.mark.parametrize(
    "secret",
    [
        "projects/p/secrets/s",
        "amplitude-key",
        "projects/p/secrets/s/versions/",
        "projects/p/secrets/s/versions/1/extra",
    ],
)
def test_bad_secret_names(secret: str) -> None:
    assert error(*FILES, f"--amplitude_api_key_secret={secret}") == (
        "--amplitude_api_key_secret must look like projects/P/secrets/S/versions/V "
        "(V may be latest)"
    )


@pytest.mark.parametrize("runner", ["DataflowRunner", "dataflow", "TestDataflowRunner"])
def test_plain_key_with_dataflow_is_an_error(runner: str) -> None:
    text = error(*FILES, f"--amplitude_api_key={KEY}", f"--runner={runner}")
    assert "--amplitude_api_key_secret projects/P/secrets/S/versions/V" in text
    assert text.startswith(
        "a plain API key (--amplitude_api_key or AMPLITUDE_API_KEY) would be visible "
        "in the Dataflow job"
    )
    assert KEY not in text


def test_env_key_with_dataflow_is_an_error() -> None:
    text = error(
        *FILES, "--runner=DataflowRunner", environ={"AMPLITUDE_API_KEY": ENV_KEY}
    )
    assert "pass --amplitude_api_key_secret" in text


def test_secret_with_dataflow_is_fine() -> None:
    result = config(
        *STREAM,
        "--runner=DataflowRunner",
        f"--amplitude_api_key_secret={SECRET}",
        environ={"AMPLITUDE_API_KEY": ENV_KEY},
    )
    assert (result.api_key, result.api_key_secret) == (None, SECRET)


def test_plain_key_with_another_runner_is_fine() -> None:
    assert (
        config(*FILES, f"--amplitude_api_key={KEY}", "--runner=DirectRunner").api_key
        == KEY
    )


@pytest.mark.parametrize(
    "flags",
    [
        [*FILES, f"--amplitude_api_key={KEY}"],
        [*FILES, "--amplitude_api_key", KEY],
        [*FILES, f"--amplitude_api_key={KEY}", "--visitor_code_as_user_id"],
    ],
)
def test_plain_key_is_removed_from_the_options(flags: list) -> None:
    opts = options(*flags)
    result = resolve(opts, environ={})
    assert result.api_key == KEY
    assert opts.view_as(AmplitudeStreamOptions).amplitude_api_key is None
    assert KEY not in str(opts.get_all_options())
    assert KEY not in str(opts.get_all_options(retain_unknown_options=True))
    assert KEY not in repr(result)
    assert KEY not in str(result)
    assert KEY.encode() not in pickle.dumps(opts)
    assert opts.view_as(AmplitudeStreamOptions).input_path == os.path.abspath(
        "samples/*.jsonl"
    )


def test_plain_key_is_removed_even_when_the_options_are_rejected() -> None:
    opts = options(f"--amplitude_api_key={KEY}", "--runner=DataflowRunner", *FILES)
    with pytest.raises(OptionsError):
        resolve(opts, environ={})
    assert opts.view_as(AmplitudeStreamOptions).amplitude_api_key is None
    assert KEY not in str(opts.get_all_options())
    opts = options(f"--amplitude_api_key={KEY}")
    with pytest.raises(OptionsError):
        resolve(opts, environ={})
    assert KEY not in str(opts.get_all_options())


def test_key_secret_option_is_kept() -> None:
    opts = options(*FILES, f"--amplitude_api_key_secret={SECRET}")
    resolve(opts, environ={})
    assert opts.view_as(AmplitudeStreamOptions).amplitude_api_key_secret == SECRET


def test_env_key_is_not_in_the_config_repr() -> None:
    result = config(*FILES, environ={"AMPLITUDE_API_KEY": ENV_KEY})
    assert ENV_KEY not in repr(result)


# --- preview ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "flags, environ, preview",
    [
        ([], {}, True),
        ([f"--amplitude_api_key={KEY}"], {}, False),
        ([f"--amplitude_api_key_secret={SECRET}"], {}, False),
        ([], {"AMPLITUDE_API_KEY": ENV_KEY}, False),
        (["--preview_path=out/p"], {}, True),
        ([f"--amplitude_api_key={KEY}", "--preview_path=out/p"], {}, True),
        ([f"--amplitude_api_key_secret={SECRET}", "--preview_path=out/p"], {}, True),
    ],
)
def test_preview(flags: list, environ: dict, preview: bool) -> None:
    assert config(*FILES, *flags, environ=environ).preview is preview


@pytest.mark.parametrize(
    "source", [f"--input_subscription={SUBSCRIPTION}", f"--input_topic={TOPIC}"]
)
def test_streaming_without_a_key_is_an_error(source: str) -> None:
    assert error(source, f"--dead_letter_topic={DEAD_TOPIC}") == (
        "a streaming run needs an API key (--amplitude_api_key_secret, "
        "--amplitude_api_key or AMPLITUDE_API_KEY): without one it would consume "
        "messages and deliver none"
    )


def test_streaming_with_env_key_is_fine() -> None:
    assert config(*STREAM, environ={"AMPLITUDE_API_KEY": ENV_KEY}).api_key == ENV_KEY


def test_streaming_preview_is_an_error() -> None:
    assert error(*STREAM, f"--amplitude_api_key={KEY}", "--preview_path=p").startswith(
        "--preview_path is for bounded runs"
    )


# --- plans and delivery -----------------------------------------------------------


@pytest.mark.parametrize(
    "plan, batch_size, rps, eps",
    [
        ("starter", 10, 100, 1000),
        ("plus", 10, 100, 1000),
        ("growth", 1000, 0, 0),
        ("enterprise", 1000, 0, 0),
    ],
)
def test_plan_defaults(plan: str, batch_size: int, rps: float, eps: float) -> None:
    delivery = config(*FILES, f"--amplitude_plan={plan}").delivery
    assert (
        delivery.batch_size,
        delivery.max_requests_per_sec,
        delivery.max_events_per_sec,
    ) == (batch_size, rps, eps)


def test_default_plan_is_growth() -> None:
    assert config(*FILES).delivery == config(*FILES, "--amplitude_plan=growth").delivery


@pytest.mark.parametrize("plan", ["starter", "plus", "growth", "enterprise"])
def test_explicit_values_override_the_plan(plan: str) -> None:
    delivery = config(
        *FILES,
        f"--amplitude_plan={plan}",
        "--batch_size=250",
        "--max_requests_per_sec=40",
        "--max_events_per_sec=800",
        "--num_shards=8",
    ).delivery
    assert (
        delivery.batch_size,
        delivery.max_requests_per_sec,
        delivery.max_events_per_sec,
    ) == (250, 40.0, 800.0)


def test_zero_caps_override_the_starter_plan() -> None:
    delivery = config(
        *FILES,
        "--amplitude_plan=starter",
        "--max_requests_per_sec=0",
        "--max_events_per_sec=0",
    ).delivery
    assert (delivery.max_requests_per_sec, delivery.max_events_per_sec) == (0, 0)
    assert delivery.batch_size == 10


def test_caps_hold_per_worker_process_whatever_the_shards() -> None:
    result = config(*FILES, "--amplitude_plan=starter", "--num_shards=4")
    assert result.num_shards == 4
    assert result.delivery.max_requests_per_sec == 100.0
    assert result.delivery.max_events_per_sec == 1000.0


def test_batch_size_limit() -> None:
    assert config(*FILES, "--batch_size=2000").delivery.batch_size == 2000
    assert error(*FILES, "--batch_size=2001") == (
        "--batch_size 2001 is above Amplitude's 2,000 events per request"
    )


@pytest.mark.parametrize(
    "flag",
    [
        "--batch_size=0",
        "--batch_size=-5",
        "--num_shards=0",
        "--min_id_length=0",
        "--max_retry_secs=-1",
        "--max_buffering_secs=nan",
        "--amplitude_plan=free",
        "--amplitude_region=ap",
        "--amplitude_api=rest",
        "--exposure_keys=names",
        "--input_format=xml",
        "--visitor_code_as_user_id=maybe",
    ],
)
def test_invalid_values_are_refused_by_the_parser(flag: str) -> None:
    with pytest.raises(SystemExit):
        config(*FILES, flag)


@pytest.mark.parametrize(
    "flags, pause",
    [
        ([], 30.0),
        (["--amplitude_api=http"], 30.0),
        (["--amplitude_api=batch"], 15.0),
        (["--amplitude_api=batch", "--throttle_pause_secs=5"], 5.0),
        (["--throttle_pause_secs=0"], 0.0),
    ],
)
def test_throttle_pause(flags: list, pause: float) -> None:
    assert config(*FILES, *flags).delivery.throttle_pause_secs == pause


@pytest.mark.parametrize(
    "flags, url",
    [
        ([], "https://api2.amplitude.com/2/httpapi"),
        (["--amplitude_region=eu"], "https://api.eu.amplitude.com/2/httpapi"),
        (["--amplitude_api=batch"], "https://api2.amplitude.com/batch"),
        (
            ["--amplitude_region=eu", "--amplitude_api=batch"],
            "https://api.eu.amplitude.com/batch",
        ),
        (
            ["--amplitude_endpoint=http://127.0.0.1:8080/"],
            "http://127.0.0.1:8080/2/httpapi",
        ),
        (
            ["--amplitude_endpoint=https://proxy.example", "--amplitude_api=batch"],
            "https://proxy.example/batch",
        ),
    ],
)
def test_url(flags: list, url: str) -> None:
    result = config(*FILES, *flags)
    assert result.delivery.url == url
    assert result.delivery.api == (
        "batch" if "--amplitude_api=batch" in flags else "http"
    )


def test_endpoint_must_be_a_url() -> None:
    message = (
        "--amplitude_endpoint must be an http:// or https:// URL with a host and no "
        "query or fragment, e.g. http://127.0.0.1:8080"
    )
    for endpoint in ("localhost:8080", "http://", "http://127.0.0.1:1/?x=1", "ftp://h"):
        assert error(*FILES, f"--amplitude_endpoint={endpoint}") == message


def test_retry_buffering_and_min_id_length() -> None:
    result = config(
        *FILES, "--max_retry_secs=60", "--max_buffering_secs=0.5", "--min_id_length=3"
    )
    assert result.delivery.max_retry_secs == 60.0
    assert result.max_buffering_secs == 0.5
    assert result.delivery.min_id_length == 3
    assert result.mapping.min_id_length == 3


# --- mapping options --------------------------------------------------------------


@pytest.mark.parametrize(
    "flags, expected",
    [
        ([], False),
        (["--visitor_code_as_user_id"], True),
        (["--visitor_code_as_user_id=true"], True),
        (["--visitor_code_as_user_id=True"], True),
        (["--visitor_code_as_user_id=false"], False),
        (["--visitor_code_as_user_id=FALSE"], False),
        (["--visitor_code_as_user_id", "--event_mode=event"], True),
        (["--visitor_code_as_user_id", "true"], True),
    ],
)
def test_visitor_code_as_user_id(flags: list, expected: bool) -> None:
    assert config(*FILES, *flags).mapping.visitor_code_as_user_id is expected


def test_boolean_flag_does_not_swallow_the_next_flag() -> None:
    result = config("--visitor_code_as_user_id", *FILES)
    assert result.mapping.visitor_code_as_user_id is True
    assert result.input_path == os.path.abspath("samples/*.jsonl")


@pytest.mark.parametrize(
    "value, expected",
    [
        ("true", True),
        ("yes", True),
        ("1", True),
        (" On ", True),
        ("false", False),
        ("no", False),
        ("0", False),
        ("off", False),
        (True, True),
        (False, False),
    ],
)
def test_str_to_bool(value, expected: bool) -> None:
    assert str_to_bool(value) is expected


def test_mapping_options() -> None:
    result = config(
        *FILES,
        "--event_mode=identify, event,experiment",
        "--exposure_event_type=AB Exposure",
        "--exposure_keys=keys",
        "--visitor_code_as_user_id=true",
        "--min_id_length=1",
    )
    assert result.mapping == MappingSettings(
        event_modes=("identify", "event", "experiment"),
        exposure_event_type="AB Exposure",
        exposure_keys="keys",
        visitor_code_as_user_id=True,
        min_id_length=1,
    )


@pytest.mark.parametrize(
    "flag, message",
    [
        (
            "--event_mode=identify,exposure",
            "unknown event mode 'exposure'; choose from identify, experiment, event",
        ),
        ("--event_mode=event,event", "each event mode may be given once"),
        ("--event_mode=,", "at least one event mode is needed"),
        ("--exposure_event_type=$identify", "'$identify' is an event type Amplitude"),
    ],
)
def test_bad_mapping_options(flag: str, message: str) -> None:
    assert error(*FILES, flag).startswith(message)

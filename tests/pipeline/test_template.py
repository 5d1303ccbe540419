"""The Flex Template packaging, checked offline.

- ``metadata.json`` against the job's options: the same names both ways, required
  where a streaming launch requires them, each regex tested with valid and invalid
  values that the option parser accepts as the launcher passes them (``--name=value``).
- The launcher image (``Dockerfile``) and the worker package (``setup.py``): the same
  Beam version as ``pyproject.toml``, and every package the workers import.
- The streaming job translated for the Dataflow runner without submitting it (Beam's
  ``--dry_run``): its step labels, which in-place updates depend on, and no plain API
  key anywhere in what would be submitted.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import runpy
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
from fnmatch import fnmatch
from pathlib import Path

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.dataflow.internal import apiclient

import pipeline.main
from pipeline.options import AmplitudeStreamOptions, OptionsError, resolve

ROOT = Path(__file__).resolve().parents[2]
METADATA = json.loads((ROOT / "metadata.json").read_text(encoding="utf-8"))
PARAMETERS = {parameter["name"]: parameter for parameter in METADATA["parameters"]}

# The job's options that are no template parameter.
NOT_PARAMETERS = {"amplitude_api_key"}
# Beam's own options that the template also exposes.
BEAM_PARAMETERS = {"max_num_workers", "autoscaling_algorithm"}
# What a streaming launch on Dataflow cannot do without; everything else is optional
# (input_subscription and input_topic are alternatives, checked at launch).
REQUIRED_PARAMETERS = {"amplitude_api_key_secret", "dead_letter_topic"}

PROJECT = "kam-test-project"
SUBSCRIPTION = f"projects/{PROJECT}/subscriptions/exposures"
TOPIC = f"projects/{PROJECT}/topics/exposures"
DEAD_LETTER_TOPIC = f"projects/{PROJECT}/topics/exposures-dl"
SECRET = f"projects/{PROJECT}/secrets/amplitude/versions/latest"
PLAIN_KEY = "plain-amplitude-key-5f3c9e1d"
DATAFLOW_ARGS = [
    "--runner=DataflowRunner",
    "--dry_run=True",
    f"--project={PROJECT}",
    "--region=europe-west1",
    "--temp_location=gs://kam-test-bucket/tmp",
]

# Step labels are the update contract of a running job: Dataflow matches the steps of
# the new job to the old one's by these names (the unique names of the pipeline proto
# on Runner v2). Renaming one needs --transform-name-mappings (docs/dataflow.md).
TOP_LEVEL_STEPS = [
    "ReadFromPubSub",
    "ToRawMessages",
    "DeliverExposures",
    "ToDeadLetterMessages",
    "PublishDeadLetters",
]
DELIVERY_STEPS = [
    "DeliverExposures/ParseExposures",
    "DeliverExposures/MapToAmplitudeEvents",
    "DeliverExposures/BatchPerShard",
    "DeliverExposures/PostToAmplitude",
    "DeliverExposures/FlattenDeadLetters",
]

VALID_VALUES = {
    "input_subscription": [SUBSCRIPTION, "projects/p-1/subscriptions/a.b_c-d~e"],
    "input_topic": [TOPIC, "projects/p/topics/t"],
    "input_path": ["gs://bucket/exposures/*.jsonl", "gs://b/2026-12-04/x.avro"],
    "input_format": ["json", "avro", "dead_letter"],
    "avro_schema": ["gs://bucket/schemas/exposure-v2.avsc"],
    "amplitude_api_key_secret": [
        SECRET,
        "projects/p/secrets/amplitude-key/versions/3",
        "projects/123456789/secrets/s/versions/latest",
    ],
    "amplitude_region": ["us", "eu"],
    "amplitude_api": ["http", "batch"],
    "amplitude_endpoint": [
        "https://proxy.example.com",
        "http://10.0.0.5:8080",
        "https://proxy.example.com/amplitude",
    ],
    "amplitude_plan": ["starter", "plus", "growth", "enterprise"],
    "batch_size": ["1", "10", "999", "1000", "1999", "2000"],
    "max_requests_per_sec": ["0", "100", "12.5"],
    "max_events_per_sec": ["0", "1000", "0.5"],
    "max_buffering_secs": ["1", "0.2", "0.05", "10"],
    "num_shards": ["1", "16", "128"],
    "max_retry_secs": ["0", "300", "12.75"],
    "throttle_pause_secs": ["0", "30", "15.5"],
    "min_id_length": ["1", "5", "12"],
    "visitor_code_as_user_id": ["true", "false"],
    "event_mode": [
        "identify",
        "experiment",
        "event",
        "identify,event",
        "identify,experiment,event",
    ],
    "exposure_event_type": ["Kameleoon Exposure", "exp", "x" * 1024],
    "exposure_keys": ["ids", "keys"],
    "preview_path": ["gs://bucket/preview/bodies"],
    "dead_letter_path": ["gs://bucket/dead-letters/run1"],
    "dead_letter_topic": [DEAD_LETTER_TOPIC],
    "max_num_workers": ["1", "20"],
    "autoscaling_algorithm": ["NONE", "THROUGHPUT_BASED"],
}
INVALID_VALUES = {
    "input_subscription": [
        "",
        "exposures",
        TOPIC,
        "projects/p/subscriptions/",
        "projects/p/subscriptions/s/extra",
        "projects/p q/subscriptions/s",
    ],
    "input_topic": ["", "exposures", SUBSCRIPTION, "projects/p/topics/"],
    "input_path": ["", "samples/exposures.jsonl", "/tmp/x.jsonl", "s3://b/x.jsonl"],
    "input_format": ["", "JSON", "csv", "json,avro"],
    "avro_schema": ["", "schemas/exposure.avsc"],
    "amplitude_api_key_secret": [
        "",
        PLAIN_KEY,
        "projects/p/secrets/s",
        "projects/p/secrets/s/versions/",
        "projects/p/secrets/s/versions/1/extra",
        "secrets/s/versions/latest",
    ],
    "amplitude_region": ["", "US", "de", "us,eu"],
    "amplitude_api": ["", "https", "batch "],
    "amplitude_endpoint": [
        "",
        "proxy.example.com",
        "ftp://proxy.example.com",
        "https://",
        "https://proxy example.com",
        "https://proxy.example.com/?key=1",
    ],
    "amplitude_plan": ["", "free", "Growth"],
    "batch_size": ["", "0", "2001", "10000", "-1", "1.5", "01"],
    "max_requests_per_sec": ["", "-1", "1e3", "inf", "nan", "1."],
    "max_events_per_sec": ["", "-5", "ten"],
    "max_buffering_secs": ["", "-0.1", "1s", "0", "0.0", "00"],
    "num_shards": ["", "0", "-3", "1.5"],
    "max_retry_secs": ["", "-1", "5m"],
    "throttle_pause_secs": ["", "-30"],
    "min_id_length": ["", "0", "five"],
    "visitor_code_as_user_id": ["", "yes", "1", "TRUE", "truee"],
    "event_mode": [
        "",
        "identity",
        "identify,",
        ",identify",
        "identify;event",
        "identify, event",
        "identify,event,experiment,identify",
    ],
    "exposure_event_type": ["", "x" * 1025, "two\nlines"],
    "exposure_keys": ["", "id", "both"],
    "preview_path": ["", "preview"],
    "dead_letter_path": ["", "dead_letters"],
    "dead_letter_topic": ["", "exposures-dl", SUBSCRIPTION],
    "max_num_workers": ["", "0", "-1", "many"],
    "autoscaling_algorithm": ["", "none", "BASIC"],
}


def job_flags() -> dict[str, argparse.Action]:
    parser = argparse.ArgumentParser()
    AmplitudeStreamOptions._add_argparse_args(parser)
    return {
        action.dest: action
        for action in parser._actions
        if action.option_strings and action.dest != "help"
    }


def matches(parameter: str, value: str) -> bool:
    """Whether ``value`` passes every regex of ``parameter``, as a whole."""
    regexes = PARAMETERS[parameter]["regexes"]
    return all(re.fullmatch(regex, value) for regex in regexes)


def cases(values: dict[str, list[str]]) -> list:
    return [
        pytest.param(name, value, id=f"{name}={value[:40]!r}")
        for name, items in values.items()
        for value in items
    ]


def read_pins(text: str) -> list[str]:
    return re.findall(r"apache-beam\[gcp\]==([0-9][0-9a-z.]*)", text)


@pytest.fixture(autouse=True)
def scratch_directory(monkeypatch, tmp_path):
    """Keeps the files Beam stages for a Dataflow job in the test's own directory."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))


@pytest.fixture
def no_network(monkeypatch):
    """Records (and refuses) every connection or name lookup made through Python."""
    attempts = []

    def refuse(*args, **kwargs):
        attempts.append(args[:2])
        raise OSError("network access in an offline test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    yield attempts
    assert attempts == [], f"the test tried the network: {attempts}"


def translate(*args: str):
    """Translates the job for Dataflow without submitting it; returns (job, config)."""
    result, config = pipeline.main.run([*DATAFLOW_ARGS, *args])
    # A dry run stops right before submission and keeps the request it would send.
    return result.job, config


def step_names(proto) -> tuple[list[str], dict[str, list[str]]]:
    transforms = proto.components.transforms
    (root,) = proto.root_transform_ids
    top = [transforms[t].unique_name for t in transforms[root].subtransforms]
    children = {
        transforms[t].unique_name: [
            transforms[c].unique_name for c in transforms[t].subtransforms
        ]
        for t in transforms[root].subtransforms
    }
    return top, children


# --- metadata.json against the job's options -------------------------------------


def test_template_parameters_are_the_job_options_and_nothing_else():
    flags = set(job_flags()) - NOT_PARAMETERS
    parameters = set(PARAMETERS) - BEAM_PARAMETERS
    assert len(PARAMETERS) == len(METADATA["parameters"]), "a parameter is repeated"
    assert not flags - parameters, (
        f"options missing from metadata.json: {flags - parameters}"
    )
    assert not parameters - flags, (
        f"parameters that are no option: {parameters - flags}"
    )
    assert not NOT_PARAMETERS & set(PARAMETERS)


@pytest.mark.parametrize("name", sorted(BEAM_PARAMETERS))
def test_beam_parameters_are_beam_options(name):
    assert name not in job_flags()
    assert name in PARAMETERS
    value = VALID_VALUES[name][-1]
    options = PipelineOptions([f"--{name}={value}"]).get_all_options()
    assert name in options
    assert str(options[name]) == value


def test_metadata_describes_a_streaming_template():
    assert METADATA["name"].strip()
    assert METADATA["description"].strip()
    assert METADATA["streaming"] is True


def test_required_parameters_are_those_a_streaming_launch_needs():
    required = {
        name
        for name, parameter in PARAMETERS.items()
        if not parameter.get("isOptional", False)
    }
    assert required == REQUIRED_PARAMETERS


def test_a_streaming_launch_with_only_the_required_parameters_resolves():
    args = [*DATAFLOW_ARGS, f"--input_subscription={SUBSCRIPTION}"]
    args += [f"--{name}={VALID_VALUES[name][0]}" for name in REQUIRED_PARAMETERS]
    config = resolve(PipelineOptions(args), environ={})
    assert config.streaming
    assert config.api_key is None
    assert config.api_key_secret == SECRET


@pytest.mark.parametrize("missing", sorted(REQUIRED_PARAMETERS))
def test_a_streaming_launch_without_a_required_parameter_fails(missing):
    args = [*DATAFLOW_ARGS, f"--input_subscription={SUBSCRIPTION}"]
    args += [
        f"--{name}={VALID_VALUES[name][0]}"
        for name in REQUIRED_PARAMETERS
        if name != missing
    ]
    with pytest.raises(OptionsError):
        resolve(PipelineOptions(args), environ={})


@pytest.mark.parametrize("name", sorted(PARAMETERS))
def test_each_parameter_has_a_label_help_text_and_anchored_regexes(name):
    parameter = PARAMETERS[name]
    assert parameter["label"].strip()
    assert parameter["helpText"].strip()
    assert isinstance(parameter.get("isOptional", False), bool)
    assert parameter["regexes"]
    for regex in parameter["regexes"]:
        re.compile(regex)
        # Anchored, so that a validator that searches agrees with one that matches.
        assert regex.startswith("^") and regex.endswith("$"), regex


def test_regex_samples_cover_every_parameter():
    assert set(VALID_VALUES) == set(PARAMETERS)
    assert set(INVALID_VALUES) == set(PARAMETERS)


@pytest.mark.parametrize(("name", "value"), cases(VALID_VALUES))
def test_regex_accepts_a_valid_value(name, value):
    assert matches(name, value)


@pytest.mark.parametrize(("name", "value"), cases(INVALID_VALUES))
def test_regex_rejects_an_invalid_value(name, value):
    assert not matches(name, value)


@pytest.mark.parametrize(("name", "value"), cases(VALID_VALUES))
def test_a_valid_value_parses_as_the_launcher_passes_it(name, value):
    options = PipelineOptions([f"--{name}={value}"]).get_all_options()
    assert options[name] is not None


@pytest.mark.parametrize(
    "name", sorted(name for name, flag in job_flags().items() if flag.choices)
)
def test_enum_regex_accepts_exactly_the_choices(name):
    for choice in job_flags()[name].choices:
        assert matches(name, choice)
        assert not matches(name, choice + "x")
        assert not matches(name, choice.upper() + "X")


@pytest.mark.parametrize(("value", "expected"), [("true", True), ("false", False)])
def test_boolean_options_take_the_launchers_true_and_false(value, expected):
    options = PipelineOptions([f"--visitor_code_as_user_id={value}"])
    assert options.view_as(AmplitudeStreamOptions).visitor_code_as_user_id is expected


def test_boolean_options_keep_the_bare_flag_and_default():
    bare = PipelineOptions(["--visitor_code_as_user_id"])
    assert bare.view_as(AmplitudeStreamOptions).visitor_code_as_user_id is True
    unset = PipelineOptions([])
    assert unset.view_as(AmplitudeStreamOptions).visitor_code_as_user_id is False


# --- Launcher image and worker package -------------------------------------------


def test_dockerfile_pins_the_beam_version_of_pyproject():
    (pyproject_pin,) = read_pins((ROOT / "pyproject.toml").read_text())
    assert read_pins((ROOT / "Dockerfile").read_text()) == [pyproject_pin]
    assert beam.__version__ == pyproject_pin


def test_dockerfile_is_a_python_launcher_image_of_this_project():
    dockerfile = (ROOT / "Dockerfile").read_text()
    (base,) = re.findall(r"^FROM\s+(\S+)", dockerfile, flags=re.MULTILINE)
    assert base.startswith(
        "gcr.io/dataflow-templates-base/python311-template-launcher-base"
    )
    env = dict(
        re.findall(r'^ENV\s+(\w+)="?\$\{WORKDIR\}/([^"\s]+)"?', dockerfile, re.M)
    )
    assert env == {
        "FLEX_TEMPLATE_PYTHON_PY_FILE": "main.py",
        "FLEX_TEMPLATE_PYTHON_SETUP_FILE": "setup.py",
    }
    assert all((ROOT / path).is_file() for path in env.values())


def test_dockerignore_keeps_what_the_launcher_needs():
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    needed = [
        "main.py",
        "setup.py",
        "pyproject.toml",
        "README.md",
        "pipeline/main.py",
        "transforms/delivery.py",
        "schemas/exposure.avsc",
        "devtools/__init__.py",
    ]
    for path in needed:
        parts = Path(path).parts
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        hits = [p for p in patterns for prefix in prefixes if fnmatch(prefix, p)]
        assert not hits, f"{path} is excluded by {hits}"


def test_worker_package_holds_the_job_code_and_pins_beam(tmp_path):
    source = tmp_path / "source"
    shutil.copytree(
        ROOT,
        source,
        ignore=shutil.ignore_patterns(
            ".git", ".venv", "__pycache__", "*.egg-info", "build", "dist", "tests"
        ),
    )
    # What Beam's stager runs for --setup_file when the build module is absent.
    subprocess.run(
        [sys.executable, "setup.py", "-q", "sdist", "--dist-dir", str(tmp_path)],
        cwd=source,
        check=True,
        capture_output=True,
    )
    (package,) = tmp_path.glob("*.tar.gz")
    with tarfile.open(package) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
        requires = next(n for n in archive.getnames() if n.endswith("requires.txt"))
        requirements = archive.extractfile(requires).read().decode()
    for module in (
        "pipeline/main.py",
        "pipeline/graph.py",
        "pipeline/options.py",
        "transforms/delivery.py",
        "transforms/mapping.py",
        "schemas/exposure.avsc",
    ):
        assert module in names
    (pin,) = read_pins((ROOT / "pyproject.toml").read_text())
    assert f"apache-beam[gcp]=={pin}" in requirements.splitlines()


# --- The Dataflow translation of the streaming job --------------------------------


@pytest.mark.parametrize(
    "source",
    [f"--input_subscription={SUBSCRIPTION}", f"--input_topic={TOPIC}"],
    ids=["subscription", "topic"],
)
def test_dataflow_translation_keeps_the_step_labels(no_network, source):
    job, config = translate(
        source,
        f"--dead_letter_topic={DEAD_LETTER_TOPIC}",
        f"--amplitude_api_key_secret={SECRET}",
    )
    assert config.streaming
    assert job.options.get_all_options()["streaming"] is True
    top, children = step_names(job.proto_pipeline)
    assert top == TOP_LEVEL_STEPS
    assert children["DeliverExposures"] == DELIVERY_STEPS
    names = [t.unique_name for t in job.proto_pipeline.components.transforms.values()]
    assert not [name for name in names if "<lambda" in name or "line " in name]


def test_dataflow_job_carries_the_secret_name_and_no_plain_key(
    no_network, monkeypatch, caplog
):
    monkeypatch.setenv("AMPLITUDE_API_KEY", PLAIN_KEY)
    caplog.set_level(logging.DEBUG)
    job, config = translate(
        f"--input_subscription={SUBSCRIPTION}",
        f"--dead_letter_topic={DEAD_LETTER_TOPIC}",
        f"--amplitude_api_key_secret={SECRET}",
    )
    # The environment variable counts only when neither key option is given.
    assert config.api_key is None
    assert config.api_key_secret == SECRET
    options = job.options.get_all_options()
    assert options["amplitude_api_key"] is None
    assert options["amplitude_api_key_secret"] == SECRET
    # The request's environment (options, display data) is what Dataflow shows as the
    # job's parameters; a dry run stops before adding it, so add it as submission does.
    job.proto.environment = apiclient.Environment(
        packages=[],
        options=job.options,
        environment_version="8",
        proto_pipeline_staged_url="gs://kam-test-bucket/tmp/pipeline.pb",
        proto_pipeline=job.proto_pipeline,
    ).proto
    serialized = {
        "pipeline proto": job.proto_pipeline.SerializeToString(),
        "job request": job.json().encode(),
        "options": repr(options).encode(),
        "logs": caplog.text.encode(),
    }
    assert SECRET.encode() in serialized["job request"]
    for part, data in serialized.items():
        assert PLAIN_KEY.encode() not in data, f"the plain key is in the {part}"


@pytest.mark.parametrize(
    ("key_args", "environ"),
    [
        ([f"--amplitude_api_key={PLAIN_KEY}"], {}),
        ([], {"AMPLITUDE_API_KEY": PLAIN_KEY}),
    ],
    ids=["option", "environment"],
)
def test_dataflow_refuses_a_plain_key(no_network, monkeypatch, key_args, environ):
    monkeypatch.delenv("AMPLITUDE_API_KEY", raising=False)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(OptionsError, match="--amplitude_api_key_secret") as error:
        translate(
            f"--input_subscription={SUBSCRIPTION}",
            f"--dead_letter_topic={DEAD_LETTER_TOPIC}",
            *key_args,
        )
    assert PLAIN_KEY not in str(error.value)


def test_dataflow_refuses_both_key_options(no_network):
    with pytest.raises(OptionsError) as error:
        translate(
            f"--input_subscription={SUBSCRIPTION}",
            f"--dead_letter_topic={DEAD_LETTER_TOPIC}",
            f"--amplitude_api_key={PLAIN_KEY}",
            f"--amplitude_api_key_secret={SECRET}",
        )
    message = str(error.value)
    assert re.search(r"--amplitude_api_key\b(?!_)", message)
    assert "--amplitude_api_key_secret" in message
    assert PLAIN_KEY not in message


# --- The template's entry point ---------------------------------------------------


class _NotAwaitedResult:
    def wait_until_finish(self, duration=None):
        raise AssertionError("a Dataflow launch must return without waiting")


def test_main_returns_after_run_on_dataflow(monkeypatch):
    monkeypatch.setattr(
        pipeline.main, "run", lambda argv: (_NotAwaitedResult(), object())
    )
    assert pipeline.main.main(["--runner=DataflowRunner"]) == 0


def test_template_entry_file_submits_and_exits(no_network, monkeypatch):
    args = [
        *DATAFLOW_ARGS,
        f"--input_subscription={SUBSCRIPTION}",
        f"--dead_letter_topic={DEAD_LETTER_TOPIC}",
        f"--amplitude_api_key_secret={SECRET}",
    ]
    monkeypatch.setattr(sys, "argv", ["main.py", *args])
    root = logging.getLogger()
    level = root.level
    try:
        with pytest.raises(SystemExit) as exit_:
            runpy.run_path(str(ROOT / "main.py"), run_name="__main__")
    finally:
        root.setLevel(level)
    assert exit_.value.code == 0

"""The local Pub/Sub emulator: start it, create the job's topics, publish samples.

Google's official emulator (the ``cloud-pubsub-emulator`` launcher of the Cloud SDK's
``pubsub-emulator`` component, Java) is started on loopback; every client made here
talks to it over plain gRPC and never to Google Cloud. From a shell::

    python -m devtools.pubsub_emulator start --port 8085      # until Ctrl-C or SIGTERM
    export PUBSUB_EMULATOR_HOST=127.0.0.1:8085
    python -m devtools.pubsub_emulator setup --project kam-local
    python -m devtools.pubsub_emulator publish --project kam-local --topic exposures \\
        samples/exposures.jsonl --rate 50 --fresh-timestamps
    python -m devtools.pubsub_emulator pull --project kam-local \\
        --subscription exposures-dead-letter --ack
    python -m devtools.pubsub_emulator republish --project kam-local \\
        --subscription exposures-dead-letter --topic exposures

``start`` prints one line containing ``ready on 127.0.0.1:PORT`` once the emulator
accepts connections, then runs until it receives SIGTERM or SIGINT and stops the Java
process. The other commands read the emulator's address from ``PUBSUB_EMULATOR_HOST``
and refuse to run without it. In Python, :func:`start_emulator` returns a handle with
``.host`` and ``.stop()``; :func:`ensure_topic`, :func:`ensure_subscription` and
:func:`publish_lines` do the rest.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import dataclasses
import datetime
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

_LOGGER = logging.getLogger(__name__)

EMULATOR_HOST_ENV = "PUBSUB_EMULATOR_HOST"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8085
DEFAULT_PROJECT = "kam-local"
INPUT_TOPIC = "exposures"
DEAD_LETTER_TOPIC = "exposures-dead-letter"
# Subscription name -> the topic it reads.
SUBSCRIPTIONS = {INPUT_TOPIC: INPUT_TOPIC, DEAD_LETTER_TOPIC: DEAD_LETTER_TOPIC}
DEFAULT_ACK_DEADLINE_SECS = 10
LAUNCHER = Path("platform", "pubsub-emulator", "bin", "cloud-pubsub-emulator")
START_TIMEOUT_SECS = 60.0
STOP_TIMEOUT_SECS = 10.0
RPC_TIMEOUT_SECS = 30.0
# Epoch milliseconds below this are seconds (the job's rule); they are left alone.
_MIN_TIMESTAMP_MS = 100_000_000_000


class EmulatorError(RuntimeError):
    """The emulator cannot be found, started or reached."""


# Locating and starting the emulator


def find_launcher() -> Path:
    """The emulator's launcher script under the Cloud SDK root.

    The root is what ``gcloud info`` reports; where gcloud cannot answer, the
    directory two levels above the resolved ``gcloud`` executable is tried.

    Raises:
      EmulatorError: no Cloud SDK with the pubsub-emulator component is installed.
    """
    roots: list[Path] = []
    gcloud = shutil.which("gcloud")
    if gcloud is None:
        raise EmulatorError(
            "gcloud is not installed: the Pub/Sub emulator comes with the Cloud SDK "
            "(component pubsub-emulator, or the Debian package "
            "google-cloud-cli-pubsub-emulator)"
        )
    try:
        answer = subprocess.run(
            [gcloud, "info", "--format=value(installation.sdk_root)"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            stdin=subprocess.DEVNULL,
        )
        if answer.returncode == 0 and answer.stdout.strip():
            roots.append(Path(answer.stdout.strip()))
    except (OSError, subprocess.TimeoutExpired) as error:
        _LOGGER.warning("gcloud info failed (%s); guessing the SDK root", error)
    roots.append(Path(gcloud).resolve().parent.parent)
    for root in roots:
        launcher = root / LAUNCHER
        if launcher.is_file() and os.access(launcher, os.X_OK):
            return launcher
    raise EmulatorError(
        f"no Pub/Sub emulator under {', '.join(str(r) for r in roots)} ({LAUNCHER}): "
        "install the Cloud SDK component pubsub-emulator (gcloud components install "
        "pubsub-emulator, or the Debian package google-cloud-cli-pubsub-emulator)"
    )


def free_port(host: str = DEFAULT_HOST) -> int:
    """A TCP port that is free on ``host`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _parent_death_signal() -> Callable[[], None] | None:
    """A function for the child, before exec: SIGTERM when its parent dies (Linux).

    It is resolved in the parent, so that the child only makes one system call.
    The signal follows the thread that starts the child: start the emulator from a
    thread that outlives it (the main thread, a pytest fixture).
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig = 1

    def _set() -> None:
        prctl(pr_set_pdeathsig, int(signal.SIGTERM))

    return _set


@dataclasses.dataclass
class EmulatorHandle:
    """A running emulator started by :func:`start_emulator`."""

    process: subprocess.Popen
    address: str
    port: int
    data_dir: Path
    log_path: Path

    @property
    def host(self) -> str:
        """``127.0.0.1:PORT``, the value for ``PUBSUB_EMULATOR_HOST``."""
        return f"{self.address}:{self.port}"

    @property
    def pid(self) -> int:
        return self.process.pid

    def running(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout: float = STOP_TIMEOUT_SECS) -> None:
        """Stops the emulator's process group (SIGTERM, then SIGKILL) and cleans up."""
        process = self.process
        if process.poll() is None:
            _signal_group(process, signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                _signal_group(process, signal.SIGKILL)
                process.wait(timeout)
        # Children the launcher may have left behind in its group.
        _signal_group(process, signal.SIGKILL)
        shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> EmulatorHandle:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _signal_group(process: subprocess.Popen, signum: int) -> None:
    # The emulator runs in its own session, so its group id is its pid.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signum)


def start_emulator(
    port: int = 0,
    *,
    host: str = DEFAULT_HOST,
    timeout: float = START_TIMEOUT_SECS,
    launcher: Path | None = None,
) -> EmulatorHandle:
    """Starts the official emulator on ``host:port`` and waits until it accepts calls.

    Args:
      port: the port; 0 picks a free one.
      host: the address it binds; loopback by default.
      timeout: seconds to wait for it to accept connections.
      launcher: the launcher script; found with :func:`find_launcher` by default.

    Raises:
      EmulatorError: it cannot be found, the port is taken, or it did not come up.
    """
    launcher = launcher or find_launcher()
    port = port or free_port(host)
    if _port_open(host, port):
        raise EmulatorError(f"{host}:{port} is already in use")
    data_dir = Path(tempfile.mkdtemp(prefix="pubsub-emulator-"))
    log_path = data_dir / "emulator.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [str(launcher), f"--host={host}", f"--port={port}"],
            cwd=data_dir,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_parent_death_signal(),
        )
    handle = EmulatorHandle(process, host, port, data_dir, log_path)
    # What `gcloud beta emulators pubsub env-init --data-dir DIR` reads.
    (data_dir / "env.yaml").write_text(
        f"{EMULATOR_HOST_ENV}: {handle.host}\n", encoding="utf-8"
    )
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            tail = handle.log_tail()
            handle.stop()
            raise EmulatorError(
                f"the emulator exited with status {process.returncode}:\n{tail}"
            )
        if _port_open(host, port):
            return handle
        if time.monotonic() > deadline:
            tail = handle.log_tail()
            handle.stop()
            raise EmulatorError(
                f"the emulator did not accept connections on {host}:{port} within "
                f"{timeout:.0f} s:\n{tail}"
            )
        time.sleep(0.2)


# Clients, topics and subscriptions


def emulator_host(host: str | None = None) -> str:
    """``host``, else ``PUBSUB_EMULATOR_HOST``.

    Raises:
      EmulatorError: neither is set (the tools never talk to Google Cloud).
    """
    host = host or os.environ.get(EMULATOR_HOST_ENV)
    if not host:
        raise EmulatorError(
            f"{EMULATOR_HOST_ENV} is not set: start the emulator (python -m "
            f"devtools.pubsub_emulator start) and export {EMULATOR_HOST_ENV}="
            f"{DEFAULT_HOST}:{DEFAULT_PORT}"
        )
    return host


def publisher_client(host: str | None = None, **kwargs: Any) -> Any:
    """A PublisherClient on a plain gRPC channel to the emulator at ``host``."""
    import grpc
    from google.cloud import pubsub_v1
    from google.pubsub_v1.services.publisher.transports import PublisherGrpcTransport

    channel = grpc.insecure_channel(emulator_host(host))
    return pubsub_v1.PublisherClient(
        transport=PublisherGrpcTransport(channel=channel), **kwargs
    )


def subscriber_client(host: str | None = None) -> Any:
    """A SubscriberClient on a plain gRPC channel to the emulator at ``host``."""
    import grpc
    from google.cloud import pubsub_v1
    from google.pubsub_v1.services.subscriber.transports import SubscriberGrpcTransport

    channel = grpc.insecure_channel(emulator_host(host))
    return pubsub_v1.SubscriberClient(
        transport=SubscriberGrpcTransport(channel=channel)
    )


def topic_path(project: str, topic: str) -> str:
    return (
        topic if topic.startswith("projects/") else f"projects/{project}/topics/{topic}"
    )


def subscription_path(project: str, subscription: str) -> str:
    if subscription.startswith("projects/"):
        return subscription
    return f"projects/{project}/subscriptions/{subscription}"


def ensure_topic(publisher: Any, topic: str) -> bool:
    """Creates the topic (a full path) unless it exists; True when it was created."""
    from google.api_core import exceptions

    try:
        publisher.create_topic(name=topic, timeout=RPC_TIMEOUT_SECS)
    except exceptions.AlreadyExists:
        return False
    return True


def ensure_subscription(
    subscriber: Any,
    subscription: str,
    topic: str,
    ack_deadline_seconds: int = DEFAULT_ACK_DEADLINE_SECS,
) -> bool:
    """Creates the subscription (full paths) unless it exists; True when created."""
    from google.api_core import exceptions

    try:
        subscriber.create_subscription(
            request={
                "name": subscription,
                "topic": topic,
                "ack_deadline_seconds": ack_deadline_seconds,
            },
            timeout=RPC_TIMEOUT_SECS,
        )
    except exceptions.AlreadyExists:
        return False
    return True


def setup(
    project: str = DEFAULT_PROJECT,
    host: str | None = None,
    ack_deadline_seconds: int = DEFAULT_ACK_DEADLINE_SECS,
    report: Callable[[str], None] | None = None,
) -> None:
    """Creates the job's topics and subscriptions in ``project`` (idempotent)."""
    publisher = publisher_client(host)
    subscriber = subscriber_client(host)
    try:
        for topic in (INPUT_TOPIC, DEAD_LETTER_TOPIC):
            path = topic_path(project, topic)
            created = ensure_topic(publisher, path)
            if report:
                report(f"topic {path}: {'created' if created else 'exists'}")
        for subscription, topic in SUBSCRIPTIONS.items():
            path = subscription_path(project, subscription)
            created = ensure_subscription(
                subscriber, path, topic_path(project, topic), ack_deadline_seconds
            )
            if report:
                report(f"subscription {path}: {'created' if created else 'exists'}")
    finally:
        subscriber.close()
        publisher.transport.close()


# Publishing


@dataclasses.dataclass(frozen=True)
class Published:
    """One published message: its data, its id and when ``publish`` was called."""

    data: bytes
    message_id: str
    sent_at: float


def read_lines(paths: Sequence[str | Path]) -> list[bytes]:
    """The non-blank lines of the files, as bytes without the line break."""
    lines = []
    for path in paths:
        with open(path, "rb") as handle:
            for line in handle:
                stripped = line.rstrip(b"\r\n")
                if stripped.strip():
                    lines.append(stripped)
    return lines


class TimestampRefresher:
    """Rewrites a valid exposure timestamp to now, keeping its form.

    Epoch milliseconds (number or digit string) stay epoch milliseconds and RFC 3339
    times stay RFC 3339. Lines that are not JSON objects, and timestamps that are
    invalid on purpose (seconds, say), are left as they are, so that the samples'
    bad messages stay bad. Successive times are strictly increasing, so that a
    repeated line gets a new ``insert_id``.
    """

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._last_ms = 0

    def _now_ms(self) -> int:
        now = max(int(self._clock() * 1000), self._last_ms + 1)
        self._last_ms = now
        return now

    def __call__(self, line: bytes) -> bytes:
        try:
            record = json.loads(line)
        except ValueError:
            return line
        if not isinstance(record, dict) or "timestamp" not in record:
            return line
        value = record["timestamp"]
        if isinstance(value, bool):
            return line
        if isinstance(value, int) and value >= _MIN_TIMESTAMP_MS:
            record["timestamp"] = self._now_ms()
        elif isinstance(value, str) and value.isascii() and value.isdigit():
            if int(value) < _MIN_TIMESTAMP_MS:
                return line
            record["timestamp"] = str(self._now_ms())
        elif isinstance(value, str) and "T" in value.upper():
            moment = datetime.datetime.fromtimestamp(
                self._now_ms() / 1000, datetime.timezone.utc
            )
            record["timestamp"] = moment.isoformat(timespec="milliseconds").replace(
                "+00:00", "Z"
            )
        else:
            return line
        return json.dumps(record, ensure_ascii=False).encode("utf-8")


def publish_lines(
    publisher: Any,
    topic: str,
    lines: Iterable[bytes],
    *,
    rate: float = 0.0,
    fresh_timestamps: bool = False,
    attributes: Mapping[str, str] | None = None,
    timeout: float = RPC_TIMEOUT_SECS,
) -> list[Published]:
    """Publishes one message per line, paced at ``rate`` messages/s (0: no pacing).

    Returns the messages in order once the emulator has confirmed every one.

    Raises:
      Exception: a publish failed (the client's error).
    """
    refresh = TimestampRefresher() if fresh_timestamps else None
    attributes = dict(attributes or {})
    pending = []
    start = time.monotonic()
    for index, line in enumerate(lines):
        if rate > 0:
            delay = start + index / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        data = refresh(line) if refresh else line
        sent_at = time.time()
        pending.append((data, sent_at, publisher.publish(topic, data, **attributes)))
    return [
        Published(data, future.result(timeout=timeout), sent_at)
        for data, sent_at, future in pending
    ]


def pull(
    subscriber: Any,
    subscription: str,
    max_messages: int = 100,
    timeout: float = 5.0,
) -> list[Any]:
    """One pull: the received messages (possibly none within ``timeout`` seconds)."""
    from google.api_core import exceptions

    try:
        response = subscriber.pull(
            request={"subscription": subscription, "max_messages": max_messages},
            timeout=timeout,
            retry=None,
        )
    except exceptions.DeadlineExceeded:
        return []
    return list(response.received_messages)


def drain_subscription(
    subscriber: Any,
    subscription: str,
    *,
    max_messages: int | None = None,
    idle_secs: float = 2.0,
    timeout: float = 60.0,
) -> Iterator[Any]:
    """Yields received messages until none came for ``idle_secs`` or ``timeout``.

    The caller acknowledges what it keeps (``subscriber.acknowledge``).
    """
    deadline = time.monotonic() + timeout
    count = 0
    while time.monotonic() < deadline:
        wanted = 100 if max_messages is None else min(100, max_messages - count)
        if wanted <= 0:
            return
        received = pull(
            subscriber,
            subscription,
            wanted,
            min(idle_secs, max(0.1, deadline - time.monotonic())),
        )
        if not received:
            return
        for message in received:
            count += 1
            yield message


# The command line


def _print(line: str) -> None:
    print(line, flush=True)


def _cmd_start(args: argparse.Namespace) -> int:
    stopping = threading.Event()

    def _on_signal(signum: int, _frame: Any) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    try:
        handle = start_emulator(args.port, host=args.host, timeout=args.timeout)
    except EmulatorError as error:
        print(f"error: {error}", file=sys.stderr, flush=True)
        return 1
    try:
        _print(
            f"Pub/Sub emulator ready on {handle.host} (pid {handle.pid}); "
            f"export {EMULATOR_HOST_ENV}={handle.host}"
        )
        while not stopping.wait(0.5):
            if not handle.running():
                print(
                    f"error: the emulator exited with status "
                    f"{handle.process.returncode}:\n{handle.log_tail()}",
                    file=sys.stderr,
                    flush=True,
                )
                return 1
    finally:
        handle.stop()
    return 0


def _cmd_setup(args: argparse.Namespace) -> int:
    setup(args.project, ack_deadline_seconds=args.ack_deadline, report=_print)
    return 0


def _cmd_publish(args: argparse.Namespace) -> int:
    lines = read_lines(args.files) * args.repeat
    attributes = dict(item.split("=", 1) for item in args.attribute)
    publisher = publisher_client()
    topic = topic_path(args.project, args.topic)
    started = time.monotonic()
    try:
        published = publish_lines(
            publisher,
            topic,
            lines,
            rate=args.rate,
            fresh_timestamps=args.fresh_timestamps,
            attributes=attributes,
        )
    finally:
        publisher.transport.close()
    _print(
        f"published {len(published)} messages to {topic} in "
        f"{time.monotonic() - started:.1f} s"
    )
    return 0


def _message_record(received: Any) -> dict:
    message = received.message
    data = bytes(message.data)
    try:
        payload, encoding = data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        payload, encoding = base64.b64encode(data).decode("ascii"), "base64"
    return {
        "message_id": message.message_id,
        "data": payload,
        "data_encoding": encoding,
        "attributes": dict(message.attributes),
    }


def _cmd_pull(args: argparse.Namespace) -> int:
    subscriber = subscriber_client()
    subscription = subscription_path(args.project, args.subscription)
    try:
        for received in drain_subscription(
            subscriber, subscription, max_messages=args.max, timeout=args.timeout
        ):
            _print(json.dumps(_message_record(received), ensure_ascii=False))
            if args.ack:
                subscriber.acknowledge(
                    subscription=subscription, ack_ids=[received.ack_id]
                )
    finally:
        subscriber.close()
    return 0


def _cmd_republish(args: argparse.Namespace) -> int:
    subscriber = subscriber_client()
    publisher = publisher_client()
    subscription = subscription_path(args.project, args.subscription)
    topic = topic_path(args.project, args.topic)
    stages = {stage.strip() for stage in args.stages.split(",") if stage.strip()}
    # Only dead letters that failed before this command started are moved: one that
    # fails again while the job runs comes back with a later failed_at, and moving
    # it again would loop.
    started = (
        datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[
            :-3
        ]
        + "Z"
    )
    count = skipped = 0
    seen: set[str] = set()
    try:
        for received in drain_subscription(
            subscriber, subscription, max_messages=args.max, timeout=args.timeout
        ):
            message = received.message
            attributes = dict(message.attributes)
            if message.message_id in seen or attributes.get("failed_at", "") >= started:
                break
            seen.add(message.message_id)
            if attributes.get("stage") not in stages:
                skipped += 1
                continue
            # The dead-letter attributes stay: the job ignores them on input.
            publisher.publish(
                topic, bytes(message.data), **dict(message.attributes)
            ).result(timeout=RPC_TIMEOUT_SECS)
            subscriber.acknowledge(subscription=subscription, ack_ids=[received.ack_id])
            count += 1
    finally:
        subscriber.close()
        publisher.transport.close()
    _print(
        f"republished {count} messages from {subscription} to {topic}; left "
        f"{skipped} of other stages"
    )
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m devtools.pubsub_emulator",
        description="Run the local Pub/Sub emulator and feed it. Every command but "
        f"start talks to the emulator named by {EMULATOR_HOST_ENV}.",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    start = commands.add_parser("start", help="run the emulator until SIGTERM/SIGINT")
    start.add_argument("--host", default=DEFAULT_HOST, help="default: 127.0.0.1")
    start.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help="default: 8085; 0 = any"
    )
    start.add_argument(
        "--timeout",
        type=float,
        default=START_TIMEOUT_SECS,
        help="seconds to wait for it to come up (default: 60)",
    )
    start.set_defaults(func=_cmd_start)

    def add_project(command: argparse.ArgumentParser) -> None:
        command.add_argument(
            "--project", default=DEFAULT_PROJECT, help="default: kam-local"
        )

    setup_cmd = commands.add_parser(
        "setup",
        help=f"create the topics {INPUT_TOPIC} and {DEAD_LETTER_TOPIC} and a "
        "subscription of the same name on each (idempotent)",
    )
    add_project(setup_cmd)
    setup_cmd.add_argument(
        "--ack-deadline",
        type=int,
        default=DEFAULT_ACK_DEADLINE_SECS,
        help="ack deadline of the subscriptions in seconds (default: 10)",
    )
    setup_cmd.set_defaults(func=_cmd_setup)

    publish = commands.add_parser(
        "publish", help="publish one message per non-blank line of the files"
    )
    add_project(publish)
    publish.add_argument("--topic", default=INPUT_TOPIC, help="default: exposures")
    publish.add_argument("files", nargs="+", help="JSON Lines files")
    publish.add_argument(
        "--rate",
        type=float,
        default=0.0,
        help="messages per second (default: 0, as fast as possible)",
    )
    publish.add_argument(
        "--repeat", type=int, default=1, help="publish the lines N times (default: 1)"
    )
    publish.add_argument(
        "--fresh-timestamps",
        action="store_true",
        help="set each valid timestamp to the time of publication (same form), so "
        "that repeats are new exposures; invalid ones are kept",
    )
    publish.add_argument(
        "--attribute",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an attribute on every message; repeatable",
    )
    publish.set_defaults(func=_cmd_publish)

    pull_cmd = commands.add_parser(
        "pull", help="print messages of a subscription as JSON lines"
    )
    add_project(pull_cmd)
    pull_cmd.add_argument("--subscription", default=DEAD_LETTER_TOPIC)
    pull_cmd.add_argument("--max", type=int, default=None, help="at most N messages")
    pull_cmd.add_argument(
        "--ack", action="store_true", help="acknowledge them (default: they return)"
    )
    pull_cmd.add_argument("--timeout", type=float, default=60.0)
    pull_cmd.set_defaults(func=_cmd_pull)

    republish = commands.add_parser(
        "republish",
        help="move messages of a subscription (dead letters) to a topic (the input)",
    )
    add_project(republish)
    republish.add_argument("--subscription", default=DEAD_LETTER_TOPIC)
    republish.add_argument("--topic", default=INPUT_TOPIC)
    republish.add_argument("--max", type=int, default=None, help="at most N messages")
    republish.add_argument("--timeout", type=float, default=60.0)
    republish.add_argument(
        "--stages",
        default="deliver",
        help="comma-separated dead-letter stages to move (default: deliver; parse "
        "and map dead letters fail again unless their payload is corrected first)",
    )
    republish.set_defaults(func=_cmd_republish)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        return args.func(args)
    except EmulatorError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

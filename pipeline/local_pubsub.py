"""Short idle pulls for the DirectRunner's Pub/Sub read: local runs only.

Beam's DirectRunner reads Pub/Sub with unary pulls of at most 10 messages and a 30 s
deadline (``_PubSubReadEvaluator._read_from_pubsub`` in
``apache_beam/runners/direct/transform_evaluator.py``), and fires processing-time
timers only between two pulls. The Pub/Sub emulator holds an empty pull until about
one second before its deadline, so on a quiet subscription each pull blocks about
29 s, and a partial batch whose ``--max_buffering_secs`` timer is due waits for the end
of that pull: a lone exposure after a quiet spell reached Amplitude about 29 s after
publication.

:func:`install_fast_local_pull` makes that read pull up to ``max_messages`` messages
with a ``pull_timeout_secs`` deadline instead. The emulator then returns an empty pull
after about ``pull_timeout_secs - 0.95`` s (at once below one second) and a pull
with messages as soon as they arrive, so timers fire within a fraction of a second.
A pull that hits its deadline counts as an empty one. Nothing else changes: messages
are still acknowledged as soon as they are read, as the DirectRunner does.

It patches the DirectRunner's evaluator in this process only. Dataflow never runs that
evaluator (Dataflow reads Pub/Sub natively), and the job installs it only when the
runner is a DirectRunner (:func:`is_direct_runner`).
"""

from __future__ import annotations

import logging
import threading
from typing import Any

_LOGGER = logging.getLogger(__name__)

DEFAULT_MAX_MESSAGES = 500
# The emulator holds an empty pull until ~0.95 s before the deadline: ~0.25 s here.
DEFAULT_PULL_TIMEOUT_SECS = 1.2
DIRECT_RUNNERS = frozenset(
    {"directrunner", "bundlebaseddirectrunner", "switchingdirectrunner"}
)

_lock = threading.Lock()
# The evaluator's own _get_subscriber_client, while the patch is installed.
_original: Any = None


def is_direct_runner(runner: object) -> bool:
    """Whether ``--runner`` (a name, a dotted path or a runner) is a DirectRunner."""
    if runner is None:
        return False
    name = runner if isinstance(runner, str) else type(runner).__name__
    return name.rsplit(".", 1)[-1].lower() in DIRECT_RUNNERS


class _QuickPullClient:
    """A SubscriberClient whose ``pull`` takes more messages and a short deadline."""

    def __init__(self, client: Any, max_messages: int, timeout: float) -> None:
        self._client = client
        self._max_messages = max_messages
        self._timeout = timeout

    def pull(self, subscription: str, max_messages: int = 10, **_: Any) -> Any:
        from google.api_core import exceptions
        from google.cloud.pubsub_v1 import types

        try:
            return self._client.pull(
                subscription=subscription,
                max_messages=max(max_messages, self._max_messages),
                timeout=self._timeout,
            )
        except exceptions.DeadlineExceeded:
            return types.PullResponse()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def install_fast_local_pull(
    max_messages: int = DEFAULT_MAX_MESSAGES,
    pull_timeout_secs: float = DEFAULT_PULL_TIMEOUT_SECS,
) -> None:
    """Makes the DirectRunner's Pub/Sub read pull quickly (this process; idempotent).

    Args:
      max_messages: messages per pull (the DirectRunner's own is 10).
      pull_timeout_secs: the deadline of each pull, in seconds.
    """
    if max_messages < 1:
        raise ValueError("max_messages must be at least 1")
    if not pull_timeout_secs > 0:
        raise ValueError("pull_timeout_secs must be positive")
    from apache_beam.runners.direct import transform_evaluator

    evaluator = transform_evaluator._PubSubReadEvaluator
    global _original
    with _lock:
        if _original is None:
            _original = evaluator.__dict__["_get_subscriber_client"]
        original = _original

        def _get_subscriber_client(cls: type, transform: Any) -> Any:
            client = original.__get__(None, cls)(transform)
            return _QuickPullClient(client, max_messages, pull_timeout_secs)

        evaluator._get_subscriber_client = classmethod(_get_subscriber_client)
    _LOGGER.info(
        "DirectRunner Pub/Sub read: up to %d messages per pull, %g s deadline",
        max_messages,
        pull_timeout_secs,
    )


def uninstall_fast_local_pull() -> None:
    """Restores the DirectRunner's own Pub/Sub pull."""
    from apache_beam.runners.direct import transform_evaluator

    global _original
    with _lock:
        if _original is not None:
            transform_evaluator._PubSubReadEvaluator._get_subscriber_client = _original
            _original = None


class MissingPubSubResource(ValueError):
    """A topic or subscription the job needs does not exist or cannot be reached."""


def check_resources(
    input_subscription: str | None,
    input_topic: str | None,
    dead_letter_topic: str | None,
    timeout_secs: float = 10.0,
) -> None:
    """Checks before a local run that the job's topics and subscription exist.

    The DirectRunner acknowledges each message as soon as it reads it, so a run that
    reads and then fails on a missing dead-letter topic has lost what it read; a
    missing subscription would end in a raw traceback. On Dataflow a failing publish
    is retried and loses nothing, and the launcher may lack the right to look, so
    the job checks only on local runners.

    Raises:
      MissingPubSubResource: naming what is missing or why it cannot be checked.
    """
    from google.api_core import exceptions
    from google.cloud import pubsub

    publisher = pubsub.PublisherClient()
    subscriber = pubsub.SubscriberClient()
    checks = [
        ("--input_subscription", input_subscription, "subscription"),
        ("--input_topic", input_topic, "topic"),
        ("--dead_letter_topic", dead_letter_topic, "topic"),
    ]
    try:
        for option, name, kind in checks:
            if not name:
                continue
            try:
                if kind == "subscription":
                    subscriber.get_subscription(subscription=name, timeout=timeout_secs)
                else:
                    publisher.get_topic(topic=name, timeout=timeout_secs)
            except exceptions.NotFound:
                raise MissingPubSubResource(
                    f"{option} {name} does not exist; create it first"
                ) from None
            except (exceptions.GoogleAPICallError, exceptions.RetryError) as error:
                raise MissingPubSubResource(
                    f"could not check {option} {name}: {type(error).__name__} "
                    "(is PUBSUB_EMULATOR_HOST set and the emulator running?)"
                ) from None
    finally:
        subscriber.close()

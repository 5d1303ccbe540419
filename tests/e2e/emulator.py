"""Helpers of the end-to-end tests on the Pub/Sub emulator.

:func:`emulator_host` gives the address of a running emulator: the one named by
``PUBSUB_EMULATOR_HOST`` (``.ci/run`` starts one), else one started for the test
module, else the tests are skipped with the reason. :class:`PubSubScratch` makes fresh
topics and subscriptions for one test and deletes them afterwards.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
import uuid
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from devtools import pubsub_emulator

PROJECT = "kam-local"
EMULATOR_HOST_ENV = pubsub_emulator.EMULATOR_HOST_ENV


def _reachable(host: str) -> bool:
    address, _, port = host.rpartition(":")
    try:
        with socket.create_connection((address.strip("[]"), int(port)), timeout=2):
            return True
    except (OSError, ValueError):
        return False


@contextlib.contextmanager
def emulator_host() -> Iterator[str]:
    """The emulator to use, with ``PUBSUB_EMULATOR_HOST`` set while the block runs.

    Uses the emulator named by ``PUBSUB_EMULATOR_HOST`` when set (and fails when
    nothing listens there), else starts one and stops it at the end; skips the
    calling tests when neither is possible.
    """
    given = os.environ.get(EMULATOR_HOST_ENV)
    if given:
        if not _reachable(given):
            pytest.fail(f"{EMULATOR_HOST_ENV}={given}, but nothing listens there")
        yield given
        return
    try:
        handle = pubsub_emulator.start_emulator()
    except pubsub_emulator.EmulatorError as error:
        pytest.skip(f"no Pub/Sub emulator: {EMULATOR_HOST_ENV} is unset and {error}")
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv(EMULATOR_HOST_ENV, handle.host)
            yield handle.host
    finally:
        handle.stop()


class PubSubScratch:
    """Fresh input and dead-letter topics, each with a subscription, for one test."""

    def __init__(self, host: str, project: str = PROJECT) -> None:
        self.project = project
        tag = uuid.uuid4().hex[:10]
        self.input_topic = pubsub_emulator.topic_path(project, f"exposures-{tag}")
        self.input_subscription = pubsub_emulator.subscription_path(
            project, f"exposures-{tag}"
        )
        self.dead_letter_topic = pubsub_emulator.topic_path(project, f"dead-{tag}")
        self.dead_letter_subscription = pubsub_emulator.subscription_path(
            project, f"dead-{tag}"
        )
        self.publisher = pubsub_emulator.publisher_client(host)
        self.subscriber = pubsub_emulator.subscriber_client(host)

    def create(self) -> PubSubScratch:
        for topic in (self.input_topic, self.dead_letter_topic):
            pubsub_emulator.ensure_topic(self.publisher, topic)
        pubsub_emulator.ensure_subscription(
            self.subscriber, self.input_subscription, self.input_topic
        )
        pubsub_emulator.ensure_subscription(
            self.subscriber, self.dead_letter_subscription, self.dead_letter_topic
        )
        return self

    def delete(self) -> None:
        for subscription in (self.input_subscription, self.dead_letter_subscription):
            with contextlib.suppress(Exception):
                self.subscriber.delete_subscription(
                    subscription=subscription, timeout=10
                )
        for topic in (self.input_topic, self.dead_letter_topic):
            with contextlib.suppress(Exception):
                self.publisher.delete_topic(topic=topic, timeout=10)
        self.subscriber.close()
        self.publisher.transport.close()

    def publish(self, data: bytes, attributes: Mapping[str, str] | None = None) -> str:
        """Publishes one message to the input topic; returns its id."""
        future = self.publisher.publish(
            self.input_topic, data, **dict(attributes or {})
        )
        return future.result(timeout=30)

    def pull_dead_letters(self, count: int, timeout: float) -> list[Any]:
        """Pulls and acknowledges dead letters until ``count`` came or ``timeout``."""
        received: list[Any] = []
        deadline = time.monotonic() + timeout
        while len(received) < count and time.monotonic() < deadline:
            batch = pubsub_emulator.pull(
                self.subscriber, self.dead_letter_subscription, 100, timeout=2.0
            )
            if batch:
                self.subscriber.acknowledge(
                    subscription=self.dead_letter_subscription,
                    ack_ids=[message.ack_id for message in batch],
                    timeout=10,
                )
                received.extend(message.message for message in batch)
        return received

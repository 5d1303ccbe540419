"""Latency: the streaming job on the DirectRunner, reading the Pub/Sub emulator.

For each ``--max_buffering_secs`` value, a fresh streaming job (a child process on the
BundleBasedDirectRunner, with the short local Pub/Sub pulls of
``pipeline.local_pubsub``) reads a fresh subscription and delivers to the local
Amplitude-compatible server in this process. Once a warm-up exposure has gone
through, synthetic exposures are published at each rate of ``--rates`` in turn, for
``--duration`` seconds each, then the job gets ``--drain`` seconds to finish.

Latency of an exposure = the server's clock when it first accepted the exposure's
``insert_id`` minus the clock just before ``publish()`` was called for it. Printed per
buffering and rate: p50, p95, p99 and max, exposures delivered (of those published),
re-posts absorbed by the server and dead letters; and the backlog (published but not
yet accepted) over the second half of each rate: a rate is sustained when that backlog
does not grow. The highest rate sustained is the largest such rate among those tried.

Usage::

    python -m benchmarks.latency [--rates 50,500] [--duration 60] \\
        [--buffering 0.2,1,5]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
import threading
import time
import uuid

from benchmarks import common, synthetic

_LOGGER = logging.getLogger(__name__)

WARM_UP_SECS = 180.0


def _run_job(argv: list[str]) -> int:
    """The job's child process: short local pulls, then ``python -m pipeline``."""
    from pipeline import local_pubsub
    from pipeline.main import main

    local_pubsub.install_fast_local_pull()
    return main(argv)


@dataclasses.dataclass
class Phase:
    rate: float
    started: float = 0.0
    ended: float = 0.0
    published: int = 0
    # (time, published so far, accepted so far) samples while publishing
    samples: list[tuple[float, int, int]] = dataclasses.field(default_factory=list)
    ids: list[str] = dataclasses.field(default_factory=list)


def _insert_id(line: str) -> str:
    from transforms.events import MappingSettings, to_amplitude_events
    from transforms.exposure import RawMessage, parse_message

    exposure = parse_message(RawMessage(line.encode("utf-8")), "json")
    return to_amplitude_events(exposure, MappingSettings())[0]["insert_id"]


def _slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of y over x; 0 for fewer than two points."""
    if len(points) < 2:
        return 0.0
    n = len(points)
    mean_x = sum(x for x, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    var = sum((x - mean_x) ** 2 for x, _ in points)
    if not var:
        return 0.0
    return sum((x - mean_x) * (y - mean_y) for x, y in points) / var


class Publisher:
    """Publishes lines at a steady rate, noting the time of each publish() call."""

    def __init__(self, client, topic: str) -> None:
        self._client = client
        self._topic = topic
        self.sent_at: dict[str, float] = {}
        self.futures = []
        self.lock = threading.Lock()

    def publish(self, line: str, insert_id: str) -> None:
        data = line.encode("utf-8")
        now = time.time()
        with self.lock:
            self.sent_at[insert_id] = now
        self.futures.append(self._client.publish(self._topic, data))

    def confirm(self, timeout: float = 60.0) -> None:
        for future in self.futures:
            future.result(timeout=timeout)
        self.futures.clear()

    def count(self) -> int:
        with self.lock:
            return len(self.sent_at)


def _accepted_of(server, ids: dict[str, float]) -> dict[str, float]:
    times = server.acceptance_times()
    return {i: times[i] for i in ids if i in times}


def run_phase(
    server, publisher: Publisher, lines, rate: float, duration: float
) -> Phase:
    phase = Phase(rate)
    count = int(rate * duration)
    batch = [(line, _insert_id(line)) for line in lines[:count]]
    del lines[:count]
    phase.started = time.time()
    start = time.monotonic()
    next_sample = start
    for index, (line, insert_id) in enumerate(batch):
        due = start + index / rate
        while True:
            now = time.monotonic()
            if now >= next_sample:
                phase.samples.append(
                    (time.time(), publisher.count(), server.accepted_count())
                )
                next_sample += 0.5
            if now >= due:
                break
            time.sleep(min(due - now, max(0.0, next_sample - now), 0.05))
        publisher.publish(line, insert_id)
    phase.ended = time.time()
    phase.published = count
    phase.ids = [insert_id for _, insert_id in batch]
    return phase


def backlog_figures(phase: Phase) -> dict:
    """Backlog (published − accepted) over the second half of the phase."""
    half = phase.started + (phase.ended - phase.started) / 2
    points = [(t, p - a) for t, p, a in phase.samples if t >= half]
    backlog = [b for _, b in points]
    slope = _slope(points)
    growing = slope > max(2.0, 0.02 * phase.rate)
    return {
        "backlog_slope": slope,
        "backlog_mean": sum(backlog) / len(backlog) if backlog else float("nan"),
        "backlog_last": backlog[-1] if backlog else float("nan"),
        "growing": growing,
    }


def _wait_for(server, ids: list[str], timeout: float) -> float:
    deadline = time.monotonic() + timeout
    wanted = set(ids)
    while time.monotonic() < deadline:
        if wanted <= set(server.acceptance_times()):
            return time.monotonic() - (deadline - timeout)
        time.sleep(0.2)
    return float("nan")


def run_buffering(
    args, buffering: float, host: str, server, lines: list[str], tag: str
) -> dict:
    from devtools import pubsub_emulator as emulator

    project = common.PROJECT
    topic = emulator.topic_path(project, f"exposures-{tag}")
    dead_topic = emulator.topic_path(project, f"dead-{tag}")
    subscription = emulator.subscription_path(project, f"exposures-{tag}")
    dead_subscription = emulator.subscription_path(project, f"dead-{tag}")
    publisher_client = emulator.publisher_client(host)
    subscriber = emulator.subscriber_client(host)
    for path in (topic, dead_topic):
        emulator.ensure_topic(publisher_client, path)
    emulator.ensure_subscription(subscriber, subscription, topic, 60)
    emulator.ensure_subscription(subscriber, dead_subscription, dead_topic, 60)
    server.reset()
    job_args = [
        "--input_subscription",
        subscription,
        "--dead_letter_topic",
        dead_topic,
        "--amplitude_api_key",
        common.API_KEY,
        "--amplitude_endpoint",
        server.url,
        "--max_buffering_secs",
        str(buffering),
    ]
    command = [common.PYTHON, "-m", "benchmarks.latency", "--run-job", *job_args]
    env = {emulator.EMULATOR_HOST_ENV: host}
    child = common.Child(command, env)
    publisher = Publisher(publisher_client, topic)
    phases: list[Phase] = []
    try:
        # Warm-up: one exposure every second until the first is accepted.
        warm_ids = []
        deadline = time.monotonic() + WARM_UP_SECS
        ready = False
        while time.monotonic() < deadline and not ready:
            if child.poll() is not None:
                raise RuntimeError(
                    "the job ended early:\n" + child.poll().stderr[-3000:]
                )
            line = lines.pop(0)
            insert_id = _insert_id(line)
            publisher.publish(line, insert_id)
            warm_ids.append(insert_id)
            time.sleep(1.0)
            ready = bool(set(warm_ids) & set(server.acceptance_times()))
        if not ready:
            raise RuntimeError("the job accepted nothing within the warm-up")
        warm_up = time.time() - child.started
        _wait_for(server, warm_ids, 30)
        with publisher.lock:
            publisher.sent_at.clear()
        server.reset()
        for rate in args.rates:
            phases.append(run_phase(server, publisher, lines, rate, args.duration))
            print(
                f"  buffering {buffering:g} s: published {phases[-1].published} at "
                f"{rate:g}/s",
                flush=True,
            )
        publisher.confirm()
        all_ids = [i for phase in phases for i in phase.ids]
        drained = _wait_for(server, all_ids, args.drain)
    finally:
        result = child.stop()
        publisher_client.transport.close()
    dead = list(
        emulator.drain_subscription(subscriber, dead_subscription, idle_secs=2.0)
    )
    subscriber.close()
    accepted = server.acceptance_times()
    stats = server.stats()
    rows = []
    for phase in phases:
        latencies = [
            accepted[i] - publisher.sent_at[i] for i in phase.ids if i in accepted
        ]
        rows.append(
            {
                "rate": phase.rate,
                "achieved_rate": phase.published
                / max(phase.ended - phase.started, 1e-9),
                "published": phase.published,
                "delivered": len(latencies),
                "p50": common.percentile(latencies, 50),
                "p95": common.percentile(latencies, 95),
                "p99": common.percentile(latencies, 99),
                "max": max(latencies) if latencies else float("nan"),
                **backlog_figures(phase),
            }
        )
    return {
        "buffering": buffering,
        "warm_up_secs": warm_up,
        "drain_secs": drained,
        "rows": rows,
        "duplicates_absorbed": stats["duplicates_absorbed"],
        "accepted_total": stats["accepted"],
        "requests": stats["requests"],
        "by_status": stats["by_status"],
        "dead_letters": len(dead),
        "job_cpu_secs": result.cpu_secs,
        "job_max_rss_mib": result.max_rss_mib,
        "job_wall_secs": result.wall_secs,
    }


def _print(report: dict) -> None:
    print(
        f"\n--max_buffering_secs {report['buffering']:g}: job up in "
        f"{report['warm_up_secs']:.1f} s; all accepted "
        f"{report['drain_secs']:.1f} s after publishing stopped; "
        f"{report['requests']} requests {json.dumps(report['by_status'])}; "
        f"job CPU {report['job_cpu_secs']:.1f} s over {report['job_wall_secs']:.0f} s, "
        f"peak {report['job_max_rss_mib']:.0f} MiB"
    )
    print(
        f"{'rate/s':>7} {'actual':>7} {'published':>9} {'delivered':>9} "
        f"{'p50 s':>7} {'p95 s':>7} "
        f"{'p99 s':>7} {'max s':>7} {'backlog':>8} {'slope/s':>8} sustained"
    )
    for row in report["rows"]:
        print(
            f"{row['rate']:>7g} {row['achieved_rate']:>7.0f} {row['published']:>9} "
            f"{row['delivered']:>9} "
            f"{row['p50']:>7.3f} {row['p95']:>7.3f} {row['p99']:>7.3f} "
            f"{row['max']:>7.3f} {row['backlog_mean']:>8.0f} "
            f"{row['backlog_slope']:>8.1f} {'no' if row['growing'] else 'yes'}"
        )
    extra = report["accepted_total"] - sum(r["delivered"] for r in report["rows"])
    print(
        f"duplicates: {report['duplicates_absorbed']} re-posts absorbed by insert_id, "
        f"{extra} accepted events not published in the measured phases; dead "
        f"letters: {report['dead_letters']}"
    )
    sustained = [r for r in report["rows"] if not r["growing"]]
    best = max(sustained, key=lambda r: r["rate"], default=None)
    print(
        "highest rate sustained without a growing backlog: "
        + (
            f"{best['rate']:g}/s (published at {best['achieved_rate']:.0f}/s)"
            if best
            else "none of the rates tried"
        )
    )
    for row in report["rows"]:
        if row["achieved_rate"] < 0.95 * row["rate"]:
            print(
                f"note: publishing reached only {row['achieved_rate']:.0f}/s of the "
                f"{row['rate']:g}/s asked"
            )


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "--run-job":
        return _run_job(argv[1:])
    parser = argparse.ArgumentParser(prog="python -m benchmarks.latency")
    parser.add_argument("--rates", default="50,500")
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--buffering", default="0.2,1,5")
    parser.add_argument("--drain", type=float, default=120.0)
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)
    args.rates = [float(r) for r in args.rates.split(",") if r]
    bufferings = [float(b) for b in args.buffering.split(",") if b]
    logging.basicConfig(level=logging.WARNING)
    common.exit_on_sigterm()

    from devtools import pubsub_emulator as emulator
    from devtools.amplitude_server import AmplitudeServer

    needed = int(sum(args.rates) * args.duration * len(bufferings)) + 2000
    lines = synthetic.generate(needed, args.seed).lines
    print(f"Latency benchmark: {common.machine_note()}")
    print(
        f"rates {args.rates} exposures/s for {args.duration:g} s each; buffering "
        f"{bufferings} s; BundleBasedDirectRunner, Pub/Sub emulator, local server"
    )
    given = os.environ.get(emulator.EMULATOR_HOST_ENV)
    handle = None
    if given:
        host = given
    else:
        try:
            handle = emulator.start_emulator()
        except emulator.EmulatorError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        host = handle.host
    reports = []
    try:
        with AmplitudeServer(api_keys=(common.API_KEY,)) as server:
            for buffering in bufferings:
                tag = uuid.uuid4().hex[:8]
                report = run_buffering(args, buffering, host, server, lines, tag)
                reports.append(report)
                _print(report)
    finally:
        if handle is not None:
            handle.stop()
    if args.json:
        with open(args.json, "w", encoding="utf-8") as out:
            json.dump(reports, out, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Soak under faults: a large bounded run while the server misbehaves.

The local Amplitude-compatible server answers 5xx to 20 % of the requests (half of
them before ingesting the events, half after, so that the job's re-posts of ingested
events must be absorbed by ``insert_id``), drops 5 % of the connections (half before,
half after ingesting), throttles every device above 30 events/s (the job pauses
throttled events for a short ``--throttle_pause_secs``) and answers 413 to bodies
above a size limit lower than a full batch. The exposures include a few very active
devices, which get throttled, and a few lines that are wrong on purpose.

Printed: exposures accepted, re-posts absorbed by ``insert_id``, exposures that
reached the server under two different ``insert_id``, dead letters (by stage and
reason kind, and whether each carries its reason) and exposures lost, i.e. neither
accepted nor dead-lettered. The run fails (exit 1) unless nothing is lost, no
exposure has two ids and every dead letter has a reason.

Usage::

    python -m benchmarks.soak [--exposures 100000]
"""

from __future__ import annotations

import argparse
import collections
import json
import logging
import sys
import time
from pathlib import Path

from benchmarks import common, synthetic

_LOGGER = logging.getLogger(__name__)

# A delivery dead letter's reason begins with one of these (transforms/amplitude.py).
_REASON_KINDS = (
    ("gave up retrying", "retries_exhausted"),
    ("the event alone", "too_large"),
    ("Amplitude rejected the event", "invalid_event"),
    ("Amplitude rejected the batch", "rejected_batch"),
    ("Amplitude rejected the API key", "rejected_batch"),
    ("the daily event quota", "daily_quota"),
    ("unexpected error", "unexpected_error"),
)


def reason_kind(record: dict) -> str:
    if record.get("stage") != "deliver":
        return str(record.get("stage"))
    reason = record.get("reason") or ""
    for prefix, kind in _REASON_KINDS:
        if reason.startswith(prefix):
            return f"deliver/{kind}"
    return "deliver/other"


def account(
    exposures: synthetic.Exposures, accepted: list[dict], dead_letters: list[dict]
) -> dict:
    """What became of each exposure line: accepted, dead-lettered, both or neither."""
    by_time = exposures.index_by_time()
    ids_of: dict[int, set[str]] = collections.defaultdict(set)
    unknown_events = 0
    for event in accepted:
        index = by_time.get(synthetic.event_time(event))
        if index is None:
            unknown_events += 1
            continue
        ids_of[index].add(event.get("insert_id"))
    lines_left = collections.Counter(exposures.lines)
    line_indexes: dict[str, list[int]] = collections.defaultdict(list)
    for index, line in enumerate(exposures.lines):
        line_indexes[line].append(index)
    dead: set[int] = set()
    unknown_dead = 0
    without_reason = 0
    kinds: collections.Counter[str] = collections.Counter()
    samples: dict[str, str] = {}
    for record in dead_letters:
        if not (isinstance(record.get("reason"), str) and record["reason"].strip()):
            without_reason += 1
        kind = reason_kind(record)
        kinds[kind] += 1
        samples.setdefault(kind, record.get("reason", ""))
        payload = record.get("payload")
        if record.get("payload_encoding") == "json":
            payload = json.dumps(payload)
        if isinstance(payload, str) and lines_left[payload] > 0:
            lines_left[payload] -= 1
            dead.add(line_indexes[payload][lines_left[payload]])
        else:
            unknown_dead += 1
    accepted_lines = set(ids_of)
    everything = set(range(len(exposures.lines)))
    lost = everything - accepted_lines - dead
    lost_valid = [i for i in lost if exposures.valid[i]]
    return {
        "lines": len(exposures.lines),
        "valid": exposures.valid_count,
        "accepted_exposures": len(accepted_lines),
        "accepted_events": len(accepted),
        "two_ids": sum(1 for ids in ids_of.values() if len(ids) > 1),
        "dead_lettered": len(dead_letters),
        "dead_by_kind": dict(kinds),
        "dead_samples": samples,
        "dead_without_reason": without_reason,
        "accepted_and_dead": len(accepted_lines & dead),
        "invalid_accepted": sum(1 for i in accepted_lines if not exposures.valid[i]),
        "lost": len(lost),
        "lost_valid": len(lost_valid),
        "lost_sample": [exposures.lines[i] for i in sorted(lost)[:3]],
        "unknown_events": unknown_events,
        "unknown_dead_letters": unknown_dead,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.soak")
    parser.add_argument("--exposures", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--server-error-rate", type=float, default=0.1)
    parser.add_argument("--error-after-ingest-rate", type=float, default=0.1)
    parser.add_argument("--drop-rate", type=float, default=0.05)
    parser.add_argument("--eps-per-device", type=float, default=30.0)
    parser.add_argument(
        "--http-max-bytes",
        type=int,
        default=200_000,
        help="the server's body limit (a full batch is about 330 kB)",
    )
    parser.add_argument("--throttle-pause-secs", type=float, default=1.0)
    parser.add_argument(
        "--max-retry-secs", type=float, help="the job's retry budget (default: its own)"
    )
    parser.add_argument("--hot-share", type=float, default=0.01)
    parser.add_argument("--hot-devices", type=int, default=8)
    parser.add_argument("--invalid-share", type=float, default=0.001)
    parser.add_argument("--timeout", type=float, default=3600)
    parser.add_argument("--keep", help="copy the job's stderr to this file")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    common.exit_on_sigterm()

    from devtools.amplitude_server import AmplitudeServer, FaultConfig

    exposures = synthetic.generate(
        args.exposures,
        args.seed,
        hot_share=args.hot_share,
        hot_devices=args.hot_devices,
        invalid_share=args.invalid_share,
    )
    faults = FaultConfig(
        server_error_rate=args.server_error_rate,
        error_after_ingest_rate=args.error_after_ingest_rate,
        drop_rate=args.drop_rate,
        seed=args.seed,
    )
    print(f"Soak benchmark: {common.machine_note()}")
    print(
        f"{len(exposures.lines):,} exposure lines ({exposures.valid_count:,} valid, "
        f"{args.hot_share:.1%} from {args.hot_devices} very active devices); server: "
        f"5xx {args.server_error_rate:.0%} before + {args.error_after_ingest_rate:.0%} "
        f"after ingesting, {args.drop_rate:.0%} dropped connections, throttle above "
        f"{args.eps_per_device:g} events/s per device, 413 above "
        f"{args.http_max_bytes:,} bytes; job: batch {args.batch_size}, throttle "
        f"pause {args.throttle_pause_secs:g} s",
        flush=True,
    )
    with (
        AmplitudeServer(
            api_keys=(common.API_KEY,),
            faults=faults,
            http_max_bytes=args.http_max_bytes,
            http_eps_per_device=args.eps_per_device,
        ) as server,
        common.temp_dir("kam-soak-") as work,
    ):
        path = exposures.write(work / "exposures.jsonl")
        dead = work / "dead"
        job_args = [
            "--input_path",
            str(path),
            "--amplitude_api_key",
            common.API_KEY,
            "--amplitude_endpoint",
            server.url,
            "--batch_size",
            str(args.batch_size),
            "--throttle_pause_secs",
            str(args.throttle_pause_secs),
            "--dead_letter_path",
            str(dead),
        ]
        if args.max_retry_secs is not None:
            job_args += ["--max_retry_secs", str(args.max_retry_secs)]
        started = time.time()
        result = common.run(common.job_command(*job_args), timeout=args.timeout)
        if args.keep:
            Path(args.keep).write_text(result.stderr)
        if result.timed_out:
            print(
                f"\nthe job was stopped after --timeout {args.timeout:g} s; what it "
                "had not delivered yet counts as lost below"
            )
        else:
            result.check("job")
        accepted = server.accepted_events()
        stats = server.stats()
        figures = account(exposures, accepted, common.read_dead_letters(dead))
    elapsed = time.time() - started
    print(
        f"\njob: {elapsed:.1f} s wall, {result.cpu_secs:.1f} s CPU, peak "
        f"{result.max_rss_mib:.0f} MiB"
    )
    print(
        f"server: {stats['requests']:,} requests, by status "
        f"{json.dumps(stats['by_status'], sort_keys=True)}, "
        f"{stats['dropped_connections']:,} dropped connections, "
        f"{stats['events_received']:,} events received"
    )
    print(f"accepted exposures:          {figures['accepted_exposures']:,}")
    print(f"accepted events:             {figures['accepted_events']:,}")
    print(f"re-posts absorbed (insert_id): {stats['duplicates_absorbed']:,}")
    print(f"exposures with two ids:      {figures['two_ids']:,}")
    print(f"dead-lettered:               {figures['dead_lettered']:,}")
    for kind, count in sorted(figures["dead_by_kind"].items()):
        print(f"  {kind}: {count:,}, e.g. {figures['dead_samples'][kind][:160]!r}")
    print(f"dead letters without reason: {figures['dead_without_reason']:,}")
    print(f"accepted and dead-lettered:  {figures['accepted_and_dead']:,}")
    print(f"lost:                        {figures['lost']:,}")
    if figures["lost_sample"]:
        print(f"  e.g. {figures['lost_sample']}")
    if figures["unknown_events"] or figures["unknown_dead_letters"]:
        print(
            f"unmatched: {figures['unknown_events']} events, "
            f"{figures['unknown_dead_letters']} dead letters"
        )
    ok = (
        figures["lost"] == 0
        and figures["two_ids"] == 0
        and figures["dead_without_reason"] == 0
        and figures["invalid_accepted"] == 0
        and figures["unknown_events"] == 0
    )
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

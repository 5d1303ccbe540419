"""Throughput: the bounded job against the official SDK and the raw limit.

For each size, the same synthetic exposures go to the same local Amplitude-compatible
server three ways, each in a child process of its own while the server runs in this
one (so no client shares an interpreter, and a GIL, with the server):

- ``job``: ``python -m pipeline --input_path FILE ... --batch_size B`` (FnApiRunner);
- ``sdk``: the official Amplitude Python SDK (``amplitude-analytics``), configured for
  the same endpoint and batch size (``flush_queue_size``); the child reads the same
  file, parses and maps each line with the job's own functions (so the events and
  their ``insert_id`` are the job's) and calls ``client.identify``, then
  ``client.shutdown()``, which flushes;
- ``raw``: the request bodies are built first, then POSTed in a loop over one pooled
  ``requests`` connection: what this server can take from one sender.

Every run must leave exactly the expected number of events on the server, which is
reset between runs. Printed per client: the process's wall time and CPU time, the
time to the first accepted event, the delivery span (first to last acceptance, from
the server's clock), events/s over the wall time and over the span, and peak memory;
then the ratios job/SDK and job/raw. Other people use this machine, so only ratios
within one run mean much.

Usage::

    python -m benchmarks.throughput [--sizes 10000,100000] [--repeat 1] [--profile]
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import json
import logging
import pstats
import statistics
import sys
import time
from pathlib import Path

from benchmarks import common, synthetic

_LOGGER = logging.getLogger(__name__)

CLIENTS = ("raw", "sdk", "job")


# The clients that run in child processes


def _events_of(path: str) -> list[dict]:
    from transforms.events import MappingSettings, to_amplitude_events
    from transforms.exposure import RawMessage, parse_message

    settings = MappingSettings()
    events = []
    with open(path, "rb") as handle:
        for line in handle:
            exposure = parse_message(RawMessage(line.rstrip(b"\n")), "json")
            events += to_amplitude_events(exposure, settings)
    return events


def _client_raw(path: str, url: str, batch_size: int) -> dict:
    import requests
    from requests.adapters import HTTPAdapter

    from transforms import amplitude

    prepare_started = time.time()
    events = _events_of(path)
    bodies = [
        amplitude.encode_body(
            amplitude.request_body(
                events[i : i + batch_size],
                common.API_KEY,
                amplitude.DEFAULT_MIN_ID_LENGTH,
            )
        )
        for i in range(0, len(events), batch_size)
    ]
    session = requests.Session()
    adapter = HTTPAdapter(pool_connections=1, pool_maxsize=1, max_retries=0)
    session.mount("http://", adapter)
    headers = {"Content-Type": "application/json"}
    target = url + "/2/httpapi"
    started = time.time()
    for body in bodies:
        response = session.post(target, data=body, headers=headers, timeout=60)
        if response.status_code != 200:
            raise RuntimeError(f"raw POST answered {response.status_code}")
    ended = time.time()
    session.close()
    return {
        "events": len(events),
        "requests": len(bodies),
        "prepare_secs": started - prepare_started,
        "send_secs": ended - started,
    }


def _client_sdk(path: str, url: str, batch_size: int) -> dict:
    from amplitude import Amplitude, Config, EventOptions, Identify

    from transforms.events import MappingSettings, to_amplitude_events
    from transforms.exposure import RawMessage, parse_message

    failures: list[str] = []

    def callback(event, code, message=None) -> None:
        if code != 200:
            failures.append(f"{code} {message}")

    client = Amplitude(
        common.API_KEY,
        Config(
            server_url=url + "/2/httpapi",
            flush_queue_size=batch_size,
            callback=callback,
        ),
    )
    settings = MappingSettings()
    started = time.time()
    count = 0
    with open(path, "rb") as handle:
        for line in handle:
            exposure = parse_message(RawMessage(line.rstrip(b"\n")), "json")
            for event in to_amplitude_events(exposure, settings):
                identify = Identify()
                for key, value in event["user_properties"]["$set"].items():
                    identify.set(key, value)
                options = EventOptions(
                    device_id=event["device_id"],
                    user_id=event.get("user_id"),
                    session_id=event.get("session_id"),
                    time=event["time"],
                    insert_id=event["insert_id"],
                )
                client.identify(identify, options)
                count += 1
    tracked = time.time()
    client.shutdown()
    ended = time.time()
    return {
        "events": count,
        "track_secs": tracked - started,
        "send_secs": ended - started,
        "shutdown_done": ended,
        "failures": failures[:5],
        "failed": len(failures),
    }


def _client_main(argv: list[str]) -> int:
    kind, path, url, batch_size = argv[0], argv[1], argv[2], int(argv[3])
    logging.basicConfig(level=logging.WARNING)
    run = _client_raw if kind == "raw" else _client_sdk
    print(json.dumps(run(path, url, batch_size)))
    return 0


# The benchmark


def _job_args(path: Path, url: str, batch_size: int, dead: Path) -> list[str]:
    return [
        "--input_path",
        str(path),
        "--amplitude_api_key",
        common.API_KEY,
        "--amplitude_endpoint",
        url,
        "--batch_size",
        str(batch_size),
        "--dead_letter_path",
        str(dead),
    ]


def _command(client: str, path: Path, url: str, batch_size: int, dead: Path):
    if client == "job":
        return common.job_command(*_job_args(path, url, batch_size, dead))
    return [
        common.PYTHON,
        "-m",
        "benchmarks.throughput",
        "--client",
        client,
        str(path),
        url,
        str(batch_size),
    ]


def run_once(
    server, client: str, path: Path, expected: int, batch_size: int, work: Path
) -> dict:
    """One client's run over ``path``; checks that exactly ``expected`` arrived."""
    server.reset()
    dead = work / f"dead-{client}"
    result = common.run(
        _command(client, path, server.url, batch_size, dead), timeout=1800
    ).check(client)
    accepted = server.accepted_count()
    stats = server.stats()
    times = sorted(server.acceptance_times().values())
    if accepted != expected or len(times) != expected:
        raise RuntimeError(
            f"{client}: the server accepted {accepted} events, expected {expected}"
        )
    if stats["duplicates_absorbed"]:
        raise RuntimeError(f"{client}: {stats['duplicates_absorbed']} duplicates")
    if client == "job" and common.read_dead_letters(dead):
        raise RuntimeError("job: dead letters in a run without faults")
    first, last = times[0], times[-1]
    row = {
        "client": client,
        "events": expected,
        "requests": stats["requests"],
        "wall_secs": result.wall_secs,
        "cpu_secs": result.cpu_secs,
        "first_accept_secs": first - result.started,
        "span_secs": last - first,
        "after_last_secs": result.ended - last,
        "max_rss_mib": result.max_rss_mib,
    }
    if client != "job":
        row.update(json.loads(result.stdout.strip().splitlines()[-1]))
        if row.get("failed"):
            raise RuntimeError(f"sdk: {row['failed']} events failed: {row['failures']}")
    if client == "sdk":
        # shutdown() has flushed everything, but the process exits only once the
        # SDK's consumer thread (not a daemon) ends its wait of up to
        # flush_interval_millis (10 s): the SDK's time ends at shutdown().
        row["exit_delay_secs"] = result.ended - row["shutdown_done"]
        row["wall_secs"] = row["shutdown_done"] - result.started
        row["after_last_secs"] = row["shutdown_done"] - last
    # The raw sender's bodies are built before its clock starts: its rate is the
    # posting loop's. The job is timed from process start to exit.
    send = row["send_secs"] if client == "raw" else row["wall_secs"]
    row["events_per_sec"] = expected / send
    row["steady_events_per_sec"] = expected / max(row["span_secs"], 1e-9)
    return row


def _median_row(rows: list[dict]) -> dict:
    merged = dict(rows[0])
    for key, value in rows[0].items():
        if isinstance(value, float):
            merged[key] = statistics.median(row[key] for row in rows)
    merged["runs"] = len(rows)
    return merged


def _print_size(size: int, rows: dict[str, dict]) -> None:
    print(f"\n{size:,} exposures ({rows[next(iter(rows))]['runs']} run(s) each):")
    header = (
        f"{'client':<6} {'wall s':>7} {'cpu s':>7} {'1st acc s':>9} {'span s':>7} "
        f"{'ev/s total':>10} {'ev/s span':>10} {'peak MiB':>8} {'requests':>8}"
    )
    print(header)
    for name, row in rows.items():
        print(
            f"{name:<6} {row['wall_secs']:>7.2f} {row['cpu_secs']:>7.2f} "
            f"{row['first_accept_secs']:>9.2f} {row['span_secs']:>7.2f} "
            f"{row['events_per_sec']:>10,.0f} {row['steady_events_per_sec']:>10,.0f} "
            f"{row['max_rss_mib']:>8.0f} {row['requests']:>8}"
        )
    if "raw" in rows:
        raw = rows["raw"]
        print(
            f"raw: bodies built in {raw['prepare_secs']:.2f} s before its clock "
            f"started; posting loop {raw['send_secs']:.2f} s"
        )
    if "sdk" in rows:
        sdk = rows["sdk"]
        print(
            f"sdk: parse, map and identify() {sdk['track_secs']:.2f} s, to the end "
            f"of shutdown() {sdk['send_secs']:.2f} s; its wall time ends there (the "
            f"process itself exited {sdk['exit_delay_secs']:.2f} s later, when the "
            "SDK's consumer thread ended its flush_interval_millis wait)"
        )
    job = rows.get("job")
    if job is None:
        return
    for base in ("sdk", "raw"):
        if base in rows:
            other = rows[base]
            total = common.ratio(job["events_per_sec"], other["events_per_sec"])
            steady = common.ratio(
                job["steady_events_per_sec"], other["steady_events_per_sec"]
            )
            cpu = common.ratio(job["cpu_secs"], other["cpu_secs"])
            print(
                f"job/{base}: {total:.2f} (total), {steady:.2f} (delivery span); "
                f"CPU time {cpu:.2f}x"
            )
    print(f"job: peak memory {job['max_rss_mib']:.0f} MiB")


def profile_job(path: Path, url: str, batch_size: int, work: Path, top: int) -> str:
    """Runs the job once under cProfile; returns the top functions."""
    out = work / "job.prof"
    command = [
        common.PYTHON,
        "-m",
        "cProfile",
        "-o",
        str(out),
        "-m",
        "pipeline",
        *_job_args(path, url, batch_size, work / "dead-profile"),
    ]
    common.run(command, timeout=1800).check("profiled job")
    text = io.StringIO()
    stats = pstats.Stats(str(out), stream=text)
    stats.strip_dirs().sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumulative").print_stats(top)
    return text.getvalue()


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "--client":
        return _client_main(argv[1:])
    parser = argparse.ArgumentParser(prog="python -m benchmarks.throughput")
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--clients", default=",".join(CLIENTS))
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--profile",
        action="store_true",
        help="then run the job once more under cProfile at the largest size",
    )
    parser.add_argument("--profile-top", type=int, default=30)
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    common.exit_on_sigterm()
    sizes = [int(s) for s in args.sizes.split(",") if s]
    clients = [c for c in args.clients.split(",") if c]
    if "sdk" in clients and importlib.util.find_spec("amplitude") is None:
        print(
            "error: the SDK baseline needs the official SDK: pip install "
            "amplitude-analytics==1.3.0 (or leave it out with --clients raw,job)",
            file=sys.stderr,
        )
        return 2

    from devtools.amplitude_server import AmplitudeServer

    print(f"Throughput benchmark: {common.machine_note()}")
    print(
        f"batch size {args.batch_size}; server: local Amplitude-compatible, HTTP V2 "
        "API, per-device throttling off (the soak benchmark covers it)"
    )
    report: dict = {"machine": common.machine_note(), "sizes": {}}
    # The throttle is off: a benchmark of throughput must not wait out 30 s pauses.
    with (
        AmplitudeServer(api_keys=(common.API_KEY,), http_eps_per_device=1e12) as server,
        common.temp_dir("kam-throughput-") as work,
    ):
        for size in sizes:
            exposures = synthetic.generate(size, args.seed)
            path = exposures.write(work / f"exposures-{size}.jsonl")
            runs: dict[str, list[dict]] = {c: [] for c in clients}
            for _ in range(args.repeat):
                for client in clients:
                    row = run_once(
                        server,
                        client,
                        path,
                        exposures.valid_count,
                        args.batch_size,
                        work,
                    )
                    runs[client].append(row)
                    print(
                        f"  {client} {size:,}: {row['wall_secs']:.2f} s wall, "
                        f"{row['events_per_sec']:,.0f} ev/s",
                        flush=True,
                    )
            rows = {c: _median_row(r) for c, r in runs.items()}
            report["sizes"][size] = rows
            _print_size(size, rows)
        if args.profile:
            size = max(sizes)
            path = work / f"exposures-{size}.jsonl"
            server.reset()
            print(f"\nProfile of the job on {size:,} exposures (cProfile):")
            print(
                profile_job(path, server.url, args.batch_size, work, args.profile_top)
            )
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

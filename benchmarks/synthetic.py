"""Synthetic but realistic Kameleoon exposures, seeded so that every run is the same.

The traffic looks like a site running a few experiments:

- many visitors (about one per four exposures), a few of them much more active than
  the rest;
- five experiments with two or three variations each, some with readable keys; a
  visitor always sees the same variation of an experiment;
- a quarter of the visitors are logged-in customers (``cross_device_id``), and some
  customers use several devices (several visitor codes);
- 30 % of the visitors carry Amplitude identity data (``amplitude_device_id`` and
  ``amplitude_session_id``);
- ids are mostly JSON numbers but sometimes digit strings, and timestamps mostly
  epoch milliseconds but sometimes RFC 3339 strings, as producers send them.

Timestamps grow strictly, so each exposure has its own ``time_ms``: benchmarks use it
to tie an event that reached the server, or a dead letter, back to its exposure.

Optional extras for the soak test: ``hot_share`` of the exposures come from a handful
of very active devices (a QA tablet, a kiosk), which Amplitude throttles, and
``invalid_share`` of the lines are wrong on purpose (dead letters with reasons).

From a shell::

    python -m benchmarks.synthetic --count 100000 --out /tmp/exposures.jsonl
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import random
import string
import sys
import uuid
import zlib
from pathlib import Path

# 2026-12-04T16:41:00Z
START_MS = 1_796_402_460_000
_CODE_ALPHABET = string.ascii_lowercase + string.digits


@dataclasses.dataclass(frozen=True)
class Experiment:
    experiment_id: int
    key: str | None
    variations: tuple[tuple[int, str], ...]
    weight: float


EXPERIMENTS = (
    Experiment(241398, None, ((912345, "control"), (912346, "variant-a")), weight=0.35),
    Experiment(
        241402,
        "pricing-page-layout",
        ((912360, "compact"), (912361, "detailed")),
        weight=0.25,
    ),
    Experiment(
        241405,
        "checkout-steps",
        ((912370, "three-steps"), (912371, "one-page"), (912372, "two-steps")),
        weight=0.2,
    ),
    Experiment(
        241411,
        None,
        ((912390, "off"), (912391, "on"), (912392, "on-bold")),
        weight=0.12,
    ),
    Experiment(
        241420,
        "search-ranking",
        ((912400, "baseline"), (912401, "learned")),
        weight=0.08,
    ),
)


@dataclasses.dataclass(frozen=True)
class Visitor:
    visitor_code: str
    cross_device_id: str | None = None
    amplitude_device_id: str | None = None


@dataclasses.dataclass(frozen=True)
class Exposures:
    """Generated lines and what each one should become.

    Attributes:
      lines: the JSON lines, one per exposure.
      valid: for each line, whether the job should deliver it.
      time_ms: for each line, its exposure's time (None for a line that is wrong on
        purpose); unique among valid lines.
    """

    lines: list[str]
    valid: list[bool]
    time_ms: list[int | None]

    @property
    def valid_count(self) -> int:
        return sum(self.valid)

    def index_by_time(self) -> dict[int, int]:
        return {t: i for i, t in enumerate(self.time_ms) if t is not None}

    def write(self, path: str | Path) -> Path:
        path = Path(path)
        with open(path, "w", encoding="utf-8") as handle:
            for line in self.lines:
                handle.write(line)
                handle.write("\n")
        return path


def _visitor_code(rng: random.Random) -> str:
    return "".join(rng.choice(_CODE_ALPHABET) for _ in range(16))


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _visitors(rng: random.Random, count: int) -> list[Visitor]:
    customers = max(1, count // 5)
    visitors = []
    for _ in range(count):
        cross = None
        if rng.random() < 0.25:
            # Fewer customers than logged-in visitors: some customers use several
            # devices, and their visitor codes share one cross-device id.
            cross = f"customer-{rng.randrange(customers) + 1_000_000:07d}"
        device = _uuid(rng) if rng.random() < 0.3 else None
        visitors.append(Visitor(_visitor_code(rng), cross, device))
    return visitors


def _variation(visitor: Visitor, experiment: Experiment) -> tuple[int, str]:
    """A visitor's stable variation of an experiment (Kameleoon's bucketing)."""
    seed = f"{visitor.visitor_code}:{experiment.experiment_id}".encode()
    return experiment.variations[zlib.crc32(seed) % len(experiment.variations)]


def _rfc3339(millis: int) -> str:
    moment = datetime.datetime.fromtimestamp(millis / 1000, datetime.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{millis % 1000:03d}Z"


def _record(
    rng: random.Random, visitor: Visitor, experiment: Experiment, time_ms: int
) -> dict:
    variation_id, variation_key = _variation(visitor, experiment)
    record: dict = {"visitor_code": visitor.visitor_code}
    record["experiment_id"] = (
        str(experiment.experiment_id)
        if rng.random() < 0.1
        else experiment.experiment_id
    )
    record["variation_id"] = variation_id
    record["timestamp"] = _rfc3339(time_ms) if rng.random() < 0.05 else time_ms
    if visitor.cross_device_id is not None:
        record["cross_device_id"] = visitor.cross_device_id
    if visitor.amplitude_device_id is not None:
        record["amplitude_device_id"] = visitor.amplitude_device_id
        # A session starts up to 20 minutes before the exposure.
        record["amplitude_session_id"] = time_ms - rng.randrange(0, 1_200_000)
    if experiment.key is not None:
        record["experiment_key"] = experiment.key
        record["variation_key"] = variation_key
    return record


def _invalid_line(rng: random.Random, visitor: Visitor, time_ms: int) -> str:
    kind = rng.randrange(3)
    if kind == 0:  # epoch seconds instead of milliseconds
        return json.dumps(
            {
                "visitor_code": visitor.visitor_code,
                "experiment_id": 241398,
                "variation_id": 912345,
                "timestamp": time_ms // 1000,
            }
        )
    if kind == 1:  # a line cut short
        return json.dumps({"visitor_code": visitor.visitor_code})[:-7]
    return json.dumps(  # a reserved id Amplitude would reject
        {
            "visitor_code": visitor.visitor_code,
            "experiment_id": 241398,
            "variation_id": 912345,
            "timestamp": time_ms,
            "cross_device_id": "null",
        }
    )


def generate(
    count: int,
    seed: int = 1,
    *,
    hot_share: float = 0.0,
    hot_devices: int = 8,
    invalid_share: float = 0.0,
    mean_gap_ms: int = 20,
) -> Exposures:
    """``count`` exposure lines; the same arguments always give the same lines.

    Args:
      count: number of lines.
      seed: seeds every random choice.
      hot_share: fraction of exposures from ``hot_devices`` very active devices.
      hot_devices: number of such devices.
      invalid_share: fraction of lines that are wrong on purpose.
      mean_gap_ms: mean time between two exposures (the site's traffic).
    """
    rng = random.Random(seed)
    pool = _visitors(rng, max(1, count // 4))
    hot = [Visitor(f"qa-device-{i:03d}", None, _uuid(rng)) for i in range(hot_devices)]
    weights = [experiment.weight for experiment in EXPERIMENTS]
    lines: list[str] = []
    valid: list[bool] = []
    times: list[int | None] = []
    time_ms = START_MS
    for _ in range(count):
        time_ms += rng.randint(1, 2 * mean_gap_ms - 1)
        if hot and rng.random() < hot_share:
            visitor = rng.choice(hot)
        else:
            # The power skews activity: low indexes are the most active visitors.
            visitor = pool[int(len(pool) * rng.random() ** 1.5)]
        if rng.random() < invalid_share:
            lines.append(_invalid_line(rng, visitor, time_ms))
            valid.append(False)
            times.append(None)
            continue
        experiment = rng.choices(EXPERIMENTS, weights)[0]
        lines.append(json.dumps(_record(rng, visitor, experiment, time_ms)))
        valid.append(True)
        times.append(time_ms)
    return Exposures(lines, valid, times)


def event_time(event: dict) -> int | None:
    """The exposure time of an accepted Amplitude event (its ``time``)."""
    value = event.get("time")
    return value if isinstance(value, int) else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.synthetic")
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--hot-share", type=float, default=0.0)
    parser.add_argument("--invalid-share", type=float, default=0.0)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    exposures = generate(
        args.count,
        args.seed,
        hot_share=args.hot_share,
        invalid_share=args.invalid_share,
    )
    exposures.write(args.out)
    print(
        f"{len(exposures.lines)} lines ({exposures.valid_count} valid) -> {args.out}",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

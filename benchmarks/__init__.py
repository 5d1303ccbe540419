"""Benchmarks of the job against the local Amplitude-compatible server.

- ``python -m benchmarks.throughput``: events/s of the bounded job, of the official
  Amplitude Python SDK and of raw pre-built POSTs, on the same synthetic exposures.
- ``python -m benchmarks.latency``: publish-to-acceptance latency of the streaming
  job on the Pub/Sub emulator at steady publishing rates.
- ``python -m benchmarks.soak``: a large run under server errors, dropped
  connections, throttling and size limits; nothing may be lost or sent twice.

``docs/performance.md`` has the figures measured on the 2-core development machine.
"""

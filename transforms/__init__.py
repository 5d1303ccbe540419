"""The job's steps: reading, parsing, mapping and delivering Kameleoon exposures."""

# The one namespace of the job's Beam metrics.
METRICS_NAMESPACE = "kameleoon_amplitude"

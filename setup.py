"""Packaging stub for Dataflow workers.

All metadata and dependencies live in pyproject.toml. Dataflow stages this file
with ``--setup_file ./setup.py`` so that the ``pipeline`` and ``transforms``
packages import on the workers.
"""

import setuptools

setuptools.setup()

"""Flex Template entry point: builds and submits the job, then returns.

The template launcher runs this file with each template parameter as ``--name=value``.
It must not wait for the job to finish: launching ends once the job is submitted.
"""

import logging
import sys

from pipeline.main import main

if __name__ == "__main__":
    logging.getLogger().setLevel(logging.INFO)
    sys.exit(main())

"""Runs the job: ``python -m pipeline --help`` lists its options."""

import sys

from pipeline.main import main

sys.exit(main())

"""The README stays true to the job: its options table and its two commands."""

import re
from pathlib import Path

from pipeline.main import help_parser

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _flags() -> list[str]:
    return [
        action.option_strings[0]
        for action in help_parser()._actions
        if action.option_strings and action.option_strings[0] != "-h"
    ]


def test_the_options_table_lists_every_flag_of_the_job() -> None:
    section = README.split("## Options", 1)[1].split("\n## ", 1)[0]
    listed = re.findall(r"^\| `(--[a-z_]+)", section, flags=re.MULTILINE)
    assert listed == _flags()


def test_ci_runs_the_readme_test_command() -> None:
    quick_start = README.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"```sh\n(.*?)\n```", quick_start, flags=re.DOTALL)
    setup_and_sample, tests = commands[0], commands[1]
    assert "pip install" in setup_and_sample
    assert "python -m pipeline --input_path samples/exposures.jsonl" in setup_and_sample
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert tests.strip() in [line.strip() for line in ci]

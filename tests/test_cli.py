"""visearch.cli: every parser of every command refuses abbreviated options (allow_abbrev=False)."""

from __future__ import annotations

import argparse
from collections.abc import Iterator

import pytest

from visearch.cli import COMMANDS, build_parser
from visearch.core.jobrun import job_parser


def parsers_of(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    """``parser`` and every subparser below it."""
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in dict.fromkeys(action.choices.values()):
                yield from parsers_of(child)


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_command__no_parser_of_it_accepts_abbreviations(command: str) -> None:
    found = list(parsers_of(build_parser(command)))
    assert len(found) >= 2  # the root and the command's own parser at least
    assert [p.prog for p in found if p.allow_abbrev] == []


def test_job_parser__an_abbreviated_option_is_an_error(capsys: pytest.CaptureFixture[str]) -> None:
    parser = job_parser("a job")
    parser.add_argument("--model-version", default=None)
    with pytest.raises(SystemExit):
        parser.parse_args(["--ds", "2026-01-01", "--model", "CHAMPION"])
    assert "unrecognized arguments: --model CHAMPION" in capsys.readouterr().err
    assert parser.parse_args(["--ds", "2026-01-01", "--model-version", "CHAMPION"]).model_version == "CHAMPION"

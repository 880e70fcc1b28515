"""Every `cityops` subcommand answers --help (exit 0) without touching Kafka."""

from __future__ import annotations

import pytest

from cityops.cli import build_parser

pytestmark = pytest.mark.unit


def _subcommands() -> list[str]:
    parser = build_parser()
    action = next(a for a in parser._actions if a.dest == "command")
    return sorted(action.choices)  # type: ignore[arg-type]


def test_the_cli_has_the_documented_subcommands() -> None:
    assert {"broker", "topics", "wards", "assets", "worker", "watch", "demo"} <= set(
        _subcommands())


@pytest.mark.parametrize("command", _subcommands())
def test_every_subcommand_has_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args([command, "--help"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: cityops {command}")

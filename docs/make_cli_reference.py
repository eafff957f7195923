"""Regenerate docs/cli.md from the commands' --help texts: `python docs/make_cli_reference.py`."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from cli.main import COMMANDS, cli

HEADER = ("# Command-line reference\n\nGenerated from `geocamat COMMAND --help` by "
          "`python docs/make_cli_reference.py`. Every command exits with code 2 and a one-line message on "
          "bad input (including a truncated file, a read-only or full disk, or too little memory), and leaves "
          "no partial output; tests/test_bad_inputs.py holds each command to it and "
          "[errors.md](errors.md) lists the messages. `geocamat --debug COMMAND ...` shows tracebacks. "
          "`--overwrite` replaces only the files the command writes; anything else in the folder stays.\n")


def main() -> None:
    runner = CliRunner()
    parts = [HEADER]
    for command in ("", *COMMANDS):  # every command, in the order of the help
        args = [command, "--help"] if command else ["--help"]
        text = runner.invoke(cli, args, prog_name="geocamat", terminal_width=100).output
        parts.append(f"## geocamat {command}\n\n```\n{text.rstrip()}\n```\n")
    (Path(__file__).parent / "cli.md").write_text("\n".join(parts))


if __name__ == "__main__":
    main()

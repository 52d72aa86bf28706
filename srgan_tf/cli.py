"""What every command line of the project shares: flag parsing with one-line errors and exit statuses.

Exit statuses, the same for every command:
  0    done;
  1    bad input (a missing or unusable file, folder or model) or a run that failed;
  2    a bad flag, a stray argument or a bad config (a misspelt key, a value of the wrong type or range);
  130  interrupted (Ctrl-C, SIGTERM), as shells report SIGINT.
"""

from __future__ import annotations

import sys

from absl import flags

EXIT_OK, EXIT_BAD_INPUT, EXIT_BAD_FLAGS = 0, 1, 2
EXIT_INTERRUPTED = 130


def parse_flags(fv: flags.FlagValues, argv: list[str], usage: str) -> int | None:
    """Parses `argv` (program name first) into `fv`.

    Returns None when the command should go on, else the exit status: 0 after printing the help for
    -h/--help, 2 after printing a one-line `error: ...` for a bad flag or a stray argument.
    """
    if any(a in ("-h", "--help", "-help") for a in argv[1:]):
        print(f"usage: {usage}\n{fv.get_help(include_special_flags=False)}")
        return EXIT_OK
    try:
        rest = fv(argv)
    except flags.Error as e:
        print(f"error: {str(e).strip().splitlines()[0]}", file=sys.stderr)
        return EXIT_BAD_FLAGS
    if len(rest) > 1:
        print(f"error: unexpected arguments: {' '.join(rest[1:])}", file=sys.stderr)
        return EXIT_BAD_FLAGS
    return None


def error(e: BaseException) -> int:
    """Prints `e` as one `error: ...` line and returns the bad-input exit status."""
    text = str(e).strip()
    print(f"error: {text.splitlines()[0] if text else type(e).__name__}", file=sys.stderr)
    return EXIT_BAD_INPUT

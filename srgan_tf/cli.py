"""What every command line of the project shares: flag parsing with one-line errors and exit statuses.

Exit statuses, the same for every command:
  0    done;
  1    bad input (a missing or unusable file, folder or model) or a run that failed;
  2    a bad flag, a stray argument or a bad config (a misspelt key, a value of the wrong type or range);
  130  interrupted (Ctrl-C, SIGTERM), as shells report SIGINT.
"""

from __future__ import annotations

import atexit
import os
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

from absl import flags

EXIT_OK, EXIT_BAD_INPUT, EXIT_BAD_FLAGS = 0, 1, 2
EXIT_INTERRUPTED = 130


def parse_flags(fv: flags.FlagValues, argv: list[str], usage: str, positional: list[str] | None = None) -> int | None:
    """Parses `argv` (program name first) into `fv`.

    Returns None when the command should go on, else the exit status: 0 after printing the help for
    -h/--help, 2 after printing a one-line `error: ...` for a bad flag or a stray argument. With a
    `positional` list, one positional argument is allowed and appended to it.
    """
    if any(a in ("-h", "--help", "-help") for a in argv[1:]):
        print(f"usage: {usage}\n{fv.get_help(include_special_flags=False)}")
        return EXIT_OK
    try:
        rest = fv(argv)
    except flags.Error as e:
        print(f"error: {str(e).strip().splitlines()[0]}", file=sys.stderr)
        return EXIT_BAD_FLAGS
    allowed = 1 if positional is None else 2
    if len(rest) > allowed:
        print(f"error: unexpected arguments: {' '.join(rest[allowed:])}", file=sys.stderr)
        return EXIT_BAD_FLAGS
    if positional is not None:
        positional.extend(rest[1:])
    return None


def error(e: BaseException) -> int:
    """Prints `e` as one `error: ...` line and returns the bad-input exit status."""
    text = str(e).strip()
    print(f"error: {text.splitlines()[0] if text else type(e).__name__}", file=sys.stderr)
    return EXIT_BAD_INPUT


@contextmanager
def muted_stderr(active: bool) -> Iterator[None]:
    """Sends file descriptor 2 to /dev/null while active.

    TensorFlow's C++ libraries print to it at import whatever TF_CPP_MIN_LOG_LEVEL says ("WARNING: All
    log messages before absl::InitializeLog()", oneDNN and CUDA notices); Python exceptions raised in the
    block are reported after it, so no error is lost.
    """
    if not active:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def lower_native_log_level() -> None:
    """Keeps TensorFlow's C++ INFO and WARNING lines off stderr unless the user set TF_CPP_MIN_LOG_LEVEL.

    A command's main calls it first: the C++ libraries read the variable once, at TensorFlow's first import.
    Modules never set it at import, so importing the library changes no one's environment.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def quiet_tensorflow() -> None:
    """Keeps TensorFlow's and Keras' C++ and Python log lines and warnings off the terminal."""
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"  # takes effect if TensorFlow is not imported yet
    warnings.filterwarnings("ignore")
    with muted_stderr(True):
        import keras  # noqa: F401
        import tensorflow as tf
        from absl import logging

        tf.get_logger().setLevel("ERROR")
        logging.set_verbosity(logging.ERROR)
    # LiteRT logs the teardown of its accelerators at INFO level when the interpreter exits, with no
    # setting to stop it; registered first, this runs after every other exit handler, before that teardown.
    atexit.register(_mute_stderr_for_good)


def _mute_stderr_for_good() -> None:
    sys.stderr.flush()
    os.dup2(os.open(os.devnull, os.O_WRONLY), 2)

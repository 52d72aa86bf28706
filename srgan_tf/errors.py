"""What error messages share: the error a builder raises for an argument that cannot work, naming the
argument, and the one-line reason of any exception.

Builders (models.build_generator, losses.make_content_loss, data.training_source, ...) check their own
arguments, once, where they use them; the training command turns an ArgumentError raised while building from a
config section into a ConfigError naming the key (config.section), so the check lives in one place.
"""

from __future__ import annotations


class ArgumentError(ValueError):
    """`arg` cannot be what it is; str(error) is "<arg> <reason>"."""

    def __init__(self, arg: str, reason: str):
        super().__init__(f"{arg} {reason}")
        self.arg, self.reason = arg, reason


def check(ok: bool, arg: str, reason: str) -> None:
    """Raises ArgumentError(arg, reason) unless `ok`."""
    if not ok:
        raise ArgumentError(arg, reason)


def first_line(e: BaseException, limit: int = 200) -> str:
    """The first non-blank line of str(e) (the exception's type name if there is none), at most `limit`
    characters: the reason in a one-line error message."""
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    line = lines[0] if lines else type(e).__name__
    return line if len(line) <= limit else line[:limit - 3] + "..."

"""The experiment configs that ship with srgan-tf, one file per experiment, installed as `srgan_tf.configs`.

`python -m srgan_tf.train --config=NAME` runs the file `NAME.py` of this package (`config_path(NAME)`);
`--config=PATH.py` runs any other file. ml_collections loads a config from a file path, so `resolve_argv`
turns a name into the installed file's path before absl parses the command line; the installed package
must therefore be a folder on disk (a wheel installed by pip is, and so is an editable install).
"""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class ConfigNameError(ValueError):
    """A --config=NAME that names no shipped config; the message (one line) lists the names."""


def _folder() -> Path:
    return Path(str(resources.files(__name__)))


def names() -> list[str]:
    """The names of the shipped configs, sorted (e.g. "quickstart", "srgan")."""
    return sorted(p.stem for p in _folder().glob("*.py") if not p.name.startswith("_"))


def is_name(value: str) -> bool:
    """Whether `value` is written as a config name (a Python identifier) rather than a file path."""
    return _NAME.fullmatch(value) is not None


def config_path(name: str) -> Path:
    """The installed file of the shipped config `name`; ConfigNameError if there is none."""
    path = _folder() / f"{name}.py"
    if not is_name(name) or name.startswith("_") or not path.is_file():
        raise ConfigNameError(f"--config={name}: no shipped config of that name (choose one of "
                              f"{', '.join(names())}, or give the path of a .py config file)")
    return path


def resolve(value: str) -> str:
    """A --config value as ml_collections wants it: a name becomes its file's path, anything else (a path,
    ml_collections' `FILE:ARGUMENT`) stays as it is."""
    return str(config_path(value)) if is_name(value) else value


def resolve_argv(argv: list[str], flag: str = "config") -> list[str]:
    """A copy of `argv` whose --`flag` values (`--flag=V`, `-flag=V`, `--flag V`) went through `resolve`.

    Overrides (`--flag.KEY=VALUE`), everything after `--` and every other argument are left as they are.
    Raises ConfigNameError for a name that no shipped config has.
    """
    out, expect_value = [], False
    for i, arg in enumerate(argv):
        if arg == "--" and not expect_value:  # absl reads no flags after it
            return out + argv[i:]
        if expect_value:
            out.append(resolve(arg))
            expect_value = False
            continue
        name, eq, value = arg.partition("=")
        if name in (f"--{flag}", f"-{flag}"):
            if eq:
                arg = f"{name}={resolve(value)}"
            else:
                expect_value = True
        out.append(arg)
    return out

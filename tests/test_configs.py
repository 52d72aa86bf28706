"""Every shipped experiment config (configs/*.py) loads by name, as `--config=NAME` loads it, and validates."""

from pathlib import Path

import ml_collections
import pytest
from absl import flags
from conftest import REPO
from ml_collections import config_flags

from srgan_tf import configs
from srgan_tf.config import ConfigError, validate

FILES = sorted(p for p in (REPO / "configs").glob("*.py") if not p.name.startswith("_"))


def _load(path: Path) -> ml_collections.ConfigDict:
    """The config of file `path`, read by ml_collections' config_flags as `python -m srgan_tf.train` reads it."""
    fv = flags.FlagValues()
    config_flags.DEFINE_config_file("config", str(path), flag_values=fv)
    fv(["test"])
    return fv.config


def _validate_from_checkout(config: ml_collections.ConfigDict, tmp_path: Path) -> None:
    """validate(config) with its relative folders read from the checkout, as `--config` run there reads them.
    A folder that is not beside this checkout (the shared data) is replaced by an empty one."""
    for key, sub in (("path", ""), ("val_dir", "HR")):
        value = config.data[key]
        if not value:
            continue
        folder = REPO / value
        if not (folder / sub).is_dir():
            folder = tmp_path / key
            (folder / sub).mkdir(parents=True, exist_ok=True)
        config.data[key] = str(folder)
    validate(config)


def test_the_shipped_names_are_the_files_of_the_configs_folder():
    assert FILES, "no config files found"
    assert configs.names() == [p.stem for p in FILES]


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_every_config_loads_by_name_and_validates(path, tmp_path):
    by_name = configs.config_path(path.stem)
    assert by_name.read_text() == path.read_text()
    config = _load(by_name)
    assert set(config) >= {"model", "data", "train", "srresnet", "srgan"}
    _validate_from_checkout(config, tmp_path)


def test_a_broken_config_fails_the_same_check(tmp_path):
    """The check above can fail: a config with a crop that is not a multiple of the scale does not pass."""
    broken = tmp_path / "broken.py"
    broken.write_text((REPO / "configs" / "srgan.py").read_text() + "\n\n_get = get_config\n\n\n"
                      "def get_config():\n    c = _get()\n    c.data.crop = 30\n    return c\n")
    with pytest.raises(ConfigError, match="data.crop"):
        _validate_from_checkout(_load(broken), tmp_path)

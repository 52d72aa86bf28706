"""The package as users get it: what `import srgan_tf` promises, shipped configs and models by name, the export
command under both its names, and a non-editable install run from outside the checkout."""

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import pytest

from srgan_tf import configs, loader
from srgan_tf.loader import SHIPPED, ModelLoadError, load_upscaler, shipped_model_path
from srgan_tf.models import build_generator

REPO = Path(__file__).resolve().parents[1]
QUIET = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}


def _python(code: str, cwd: Path, python: str = sys.executable, timeout: int = 300) -> subprocess.CompletedProcess:
    """Runs `code` in a fresh interpreter (nothing imported yet), from `cwd`."""
    return subprocess.run([python, "-c", textwrap.dedent(code)], cwd=cwd, env=QUIET, capture_output=True, text=True,
                          timeout=timeout)


# ---------------------------------------------------------------- import srgan_tf


@pytest.mark.slow
def test_import_srgan_tf_makes_saved_generators_loadable_with_plain_keras(tmp_path):
    """`import srgan_tf; keras.models.load_model(...)` reads a generator with the project's custom layers, in
    whichever order Keras and TensorFlow are imported afterwards; `import srgan_tf` alone imports neither."""
    build_generator(2, 8, bicubic_skip=True).save(tmp_path / "g.keras")  # PixelShuffle and BicubicUpsample
    for first in ("import keras", "import tensorflow as tf; import keras", "import tensorflow as tf; keras = tf.keras"):
        res = _python(f"""
            import sys
            import srgan_tf
            assert "tensorflow" not in sys.modules and "keras" not in sys.modules, "import srgan_tf imported TF"
            {first}
            model = keras.models.load_model("g.keras")
            same = srgan_tf.load_generator("g.keras")
            print("loaded", type(model).__name__, model.count_params() == same.count_params())
        """, tmp_path)
        assert res.returncode == 0 and "loaded Functional True" in res.stdout, (first, res.stderr[-2000:])


def test_importing_a_command_module_changes_no_environment_and_imports_no_tensorflow(tmp_path):
    """Each command sets TF_CPP_MIN_LOG_LEVEL in its main (srgan_tf.cli.lower_native_log_level), not at import."""
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    modules = ["srgan_tf.evaluate", "srgan_tf.report", "srgan_tf.mos.__main__", "srgan_tf.export.__main__",
               "srgan_tf.upscale"]
    code = ("import importlib, os, sys\n"
            f"for m in {modules!r}: importlib.import_module(m)\n"
            "print(os.environ.get('TF_CPP_MIN_LOG_LEVEL'), 'tensorflow' in sys.modules)")
    res = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0 and res.stdout.split() == ["None", "False"], res.stdout + res.stderr[-2000:]


def test_load_generator_refuses_what_is_not_a_keras_generator_in_one_line(tmp_path):
    import srgan_tf

    (tmp_path / "broken.keras").write_bytes(b"not a zip")
    (tmp_path / "g.h5").write_bytes(b"x")
    for spec, message in ((tmp_path / "missing.keras", "no such file"), (tmp_path / "broken.keras", "not a valid"),
                          (tmp_path / "g.h5", "not a .keras file"), ("nonsense", "not a shipped model")):
        with pytest.raises(ModelLoadError, match=message) as e:
            srgan_tf.load_generator(spec)
        assert "\n" not in str(e.value)


# ---------------------------------------------------------------- shipped models and configs


def test_shipped_names_resolve_to_the_installed_models_package(tmp_path, monkeypatch):
    folder = loader._shipped_folder()
    assert folder.resolve() == (REPO / "models").resolve()  # the editable install maps srgan_tf.weights there
    for name, file in SHIPPED.items():
        if (folder / file).is_file():
            assert shipped_model_path(name) == folder / file
        else:  # not committed yet: one line naming the file
            with pytest.raises(ModelLoadError, match=rf"^{name}: the shipped model file {file} is missing"):
                load_upscaler(name)
    # With the files in place, a name loads like the path it stands for.
    build_generator(2, 8, bicubic_skip=True).save(tmp_path / SHIPPED["srresnet"])
    monkeypatch.setattr(loader, "_shipped_folder", lambda: tmp_path)
    upscaler = load_upscaler("srresnet")
    assert upscaler.scale == 4 and upscaler.name == "srresnet_x4"
    assert load_upscaler("bicubic").name == "bicubic"
    with pytest.raises(ModelLoadError, match="srgan_x4.keras"):
        load_upscaler("srgan")


def test_config_names_are_the_shipped_files_and_paths_stay_paths():
    assert {"quickstart", "srgan", "srresnet", "cpu_demo"} <= set(configs.names())
    assert configs.config_path("srgan") == Path(configs.__file__).parent / "srgan.py"
    argv = ["train", "--config=srgan", "--config.srgan.steps=3", "--workdir=w"]
    assert configs.resolve_argv(argv) == ["train", f"--config={configs.config_path('srgan')}", *argv[2:]]
    assert configs.resolve_argv(["train", "--config", "quickstart"])[2] == str(configs.config_path("quickstart"))
    for kept in (["train", "--config=configs/srgan.py"], ["train", "--config=x.py:arg"], ["train", "--", "--config=a"]):
        assert configs.resolve_argv(kept) == kept
    with pytest.raises(configs.ConfigNameError, match="--config=nope: no shipped config.*quickstart"):
        configs.resolve_argv(["train", "--config=nope"])


def test_install_hints_use_one_form():
    """Every `pip install` the package prints or documents for an extra is `pip install 'srgan-tf[EXTRA]'`."""
    import re

    sources = [p for folder in ("srgan_tf", "export") for p in (REPO / folder).rglob("*.py")]
    hints = [(p.name, m.group(1)) for p in sources for m in re.finditer(r"pip install (\S+)", p.read_text())]
    assert len(hints) >= 3
    assert [h for h in hints if not re.match(r"'srgan-tf\[\w+\]'", h[1])] == []


# ---------------------------------------------------------------- python -m srgan_tf.export, python -m export


def test_export_runs_as_srgan_tf_export_anywhere_and_as_export_in_a_checkout(tmp_path):
    installed = subprocess.run([sys.executable, "-m", "srgan_tf.export", "--help"], cwd=tmp_path, env=QUIET,
                               capture_output=True, text=True, timeout=300)
    assert installed.returncode == 0 and "python -m srgan_tf.export" in installed.stdout, installed.stderr[-2000:]
    checkout = subprocess.run([sys.executable, "-m", "export", "--help"], cwd=REPO, env=QUIET, capture_output=True,
                              text=True, timeout=300)
    assert checkout.returncode == 0 and "--fidelity_data" in checkout.stdout, checkout.stderr[-2000:]
    # Installing puts no top-level `export` package anywhere: only a checkout's cwd provides it.
    assert _python("import importlib.util; print(importlib.util.find_spec('export'))", tmp_path).stdout.strip() \
        == "None"


# ---------------------------------------------------------------- a non-editable install


def _copy_of_the_checkout(dest: Path) -> Path:
    """The source tree without VCS data, virtual environments, build outputs or run folders, so the wheel is
    built from files alone (a stale build/ of the checkout could otherwise leak into it)."""
    shutil.copytree(REPO, dest, ignore=shutil.ignore_patterns(
        ".git", ".venv", "runs", "build", "*.egg-info", "__pycache__", ".pytest_cache", ".ruff_cache",
        ".hypothesis", "exported", ".whl"))
    return dest


def install_non_editable(tmp_path: Path) -> tuple[Path, Path]:
    """`pip install .` (not editable) of a copy of the checkout into a fresh venv under `tmp_path`; returns the
    venv's interpreter and its site-packages folder (console scripts are in its bin/). tests/test_readme.py
    walks the README with it.

    How the install is isolated: the project's venv holds an editable install, a `.pth` file whose
    finder maps srgan_tf to the checkout, so no interpreter of that venv can prove anything about a real
    install. A new venv (without pip, without system site-packages) receives the package, built from a copy of
    the checkout, through `pip install --no-deps --target <its site-packages>`. Its dependencies (TensorFlow,
    Keras, ...) come from the project's venv through a `.pth` file in the new venv holding that venv's
    site-packages folder as a plain path line: such a line only appends the folder to sys.path, and the `.pth`
    files inside it (the editable finder among them) are never run, so only the installed srgan_tf can be
    imported. The copy is deleted before this returns, so no source tree of the project is reachable from a
    working folder outside the checkout.
    """
    src = _copy_of_the_checkout(tmp_path / "src")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    site = Path(_python("import sysconfig; print(sysconfig.get_paths()['purelib'])", tmp_path,
                        str(python)).stdout.strip())
    assert site.is_relative_to(venv)
    pip = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-input",
                          "--target", str(site), str(src)], capture_output=True, text=True, timeout=900)
    assert pip.returncode == 0, pip.stderr[-3000:]
    shutil.rmtree(src)
    deps = {sysconfig.get_paths()[key] for key in ("purelib", "platlib")}  # the project's venv
    (site / "_srgan_tf_test_dependencies.pth").write_text("".join(f"{d}\n" for d in sorted(deps)))
    return python, site


@pytest.mark.slow
def test_a_non_editable_install_works_from_outside_the_checkout(tmp_path):
    """`pip install .` (not editable) puts everything under srgan_tf, and the commands run from any folder
    (see install_non_editable for how the install is kept apart from the checkout)."""
    python, site = install_non_editable(tmp_path)
    python = str(python)

    top_level = {p.name for p in site.iterdir()} - {"_srgan_tf_test_dependencies.pth", "bin"}
    assert {n for n in top_level if not n.endswith(".dist-info")} == {"srgan_tf"}, top_level
    for file in ("export/__main__.py", "configs/quickstart.py", "weights/srgan_x4.keras", "weights/srgan_x4.json",
                 "weights/srresnet_x4.keras", "niqe_model/NOTICE.txt", "niqe_model/pristine_cov.txt",
                 "mos/static/index.html"):
        assert (site / "srgan_tf" / file).is_file(), file

    work = tmp_path / "work"
    work.mkdir()
    probe = _python("""
        import importlib.util, json, sys
        import srgan_tf
        from srgan_tf import configs
        from srgan_tf.loader import SHIPPED, ModelLoadError, load_upscaler, shipped_model_path
        found = {}
        for name in SHIPPED:
            try:
                found[name] = str(shipped_model_path(name))
                load_upscaler(name)
            except ModelLoadError as e:
                found[name] = "error: " + str(e)
        editable = [f for f in sys.meta_path if "Editable" in getattr(f, "__name__", type(f).__name__)]
        print(json.dumps({"srgan_tf": srgan_tf.__file__, "export": importlib.util.find_spec("export") is None,
                          "editable_finders": len(editable),
                          "default_config": str(configs.config_path("quickstart")), "shipped": found}))
    """, work, python)
    assert probe.returncode == 0, probe.stderr[-3000:]
    seen = json.loads(probe.stdout.strip().splitlines()[-1])
    assert Path(seen["srgan_tf"]).is_relative_to(site) and seen["export"] and seen["editable_finders"] == 0
    assert Path(seen["default_config"]).is_relative_to(site)
    for name, file in SHIPPED.items():
        if (REPO / "models" / file).is_file():  # committed: the installed copy is found and loads
            assert seen["shipped"][name] == str(site / "srgan_tf" / "weights" / file)
        else:
            assert seen["shipped"][name].startswith(f"error: {name}: the shipped model file {file} is missing")

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([python, *args], cwd=work, env=QUIET, capture_output=True, text=True, timeout=900)

    helped = run("-m", "srgan_tf.export", "--help")
    assert helped.returncode == 0 and "--generator" in helped.stdout, helped.stderr[-2000:]
    trained = run("-m", "srgan_tf.train", "--workdir=w", "--config.model.num_blocks=2", "--config.model.filters=8",
                  "--config.data.crop=32", "--config.train.batch_size=2", "--config.srresnet.steps=2",
                  "--config.srgan.steps=2", "--config.srgan.lr_decay_steps=1", "--config.train.eval_every=0",
                  "--config.train.log_every=1", "--config.train.checkpoint_every=1",
                  "--config.data.val_max_images=1", "--config.train.verbose=0")
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert (work / "w" / "generator.keras").is_file() and (work / "w" / "config.json").is_file()

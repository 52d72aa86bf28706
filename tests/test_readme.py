"""The README's commands, run as a new user would run them (issue #18), so the README cannot drift.

Every command of README.md's shell blocks is either run here or listed in NOT_RUN with the reason. The blocks
are the 4-space indented ones and the ```bash fences; a fence without a language holds printed output, not
commands. A command is one logical line (backslash continuations joined, the `# ...` comment dropped); a
`&&` chain is taken apart into its commands. The indented Python block (`import keras, srgan_tf ...`) is run
with the walk's interpreter. Commands quoted inline in the prose (`tensorboard --logdir ...`, `tfds build ...`)
are not read.

Each command runs twice: in the development install (the checkout's editable install) and in a non-editable
install made from a copy of the checkout into a fresh virtual environment (tests/test_package.py's
`install_non_editable`). Both walks run in a temporary folder outside the checkout whose parent holds a
`shared` link to the benchmark data, so the README's `../shared/data/...` paths (and the configs' and
commands' defaults that use them) resolve as they do beside a checkout. Every command writes its relative
outputs there; where the README chains commands (train, then report, then ship), later commands read what
the earlier ones wrote.

Substitutions (the whole table; anything else is the README's text):
- the program: `python`, `python3` and `.venv/bin/python` become the walk's interpreter; `srgan-upscale`
  becomes that interpreter running the install's `srgan-upscale` script;
- training: TINY_TRAINING is appended to every `srgan_tf.train` command (absl keeps a flag's last value, so it
  wins over the README's own step count): 2 steps per phase on a one-block, 8-filter generator;
- data that cannot be had here: configs reading DIV2K from TFDS read `../shared/data/train291` instead
  (TFDS_TO_FOLDER);
- runs the walk does not make: `runs/srgan/generator.keras` (days of GPU training on DIV2K with VGG19
  weights) and the placeholder `runs/x/` become the walk's quickstart run, `runs/quickstart/`;
- the placeholder `path/to/my_experiment.py` is written as a config file (MY_EXPERIMENT);
- the README's input images (`photo.jpg`, `photo.png`, `scan.tif`, `photos/`) are small crops of Set5 made
  before the walk;
- per command, in RUN: `extra` flags, appended: the CPU demo and its report use Set5 alone (Set14 too would
  double their evaluation time), the report sweeps two interpolation points instead of six; and the MOS
  server gets a free port instead of 8000.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONDONTWRITEBYTECODE": "1"}
TIMEOUT = 600

TINY_TRAINING = ("--config.srresnet.steps=2", "--config.srgan.steps=2", "--config.srgan.lr_decay_steps=1",
                 "--config.model.num_blocks=1", "--config.model.filters=8", "--config.data.crop=32",
                 "--config.train.batch_size=2", "--config.train.log_every=1", "--config.train.checkpoint_every=2",
                 "--config.train.eval_every=0", "--config.data.val_max_images=1")
TFDS_TO_FOLDER = ("--config.data.source=folder", "--config.data.path=../shared/data/train291")
RUNS = {"runs/srgan/generator.keras": "runs/quickstart/generator.keras", "runs/x/": "runs/quickstart/"}
MY_EXPERIMENT = '''"""A user's experiment: the base config on the sample photos, with the MSE loss (no download)."""

from srgan_tf.config import base_config


def get_config():
    config = base_config()
    config.data.source = "sample"
    config.srgan.content_loss = "mse"
    return config
'''

# ---------------------------------------------------------------- what is not run, and why

_CI = "CI's own step: .ci/run runs this very line before the tests (and the walk makes its own installs)"
_TFDS_VGG = ("needs DIV2K through TFDS and the VGG19 ImageNet weights, neither downloadable here; "
             "tests/test_train.py checks such a run stops at start saying so")
_SERVING = "needs a TF Serving server (Docker); tests/test_export.py runs these request bodies against the SavedModel"
NOT_RUN: dict[str, str] = {
    "python3 -m venv .venv": _CI,
    ".venv/bin/pip install -e .": _CI,
    '.venv/bin/pip install -e ".[dev,mos,report,serving]"': _CI,
    ".venv/bin/pytest": "the test suite itself, which this walk is part of",
    "python -m srgan_tf.train --config=srgan --workdir=runs/srgan": _TFDS_VGG,
    "export TF_CONFIG='{\"cluster\": {\"worker\": [\"10.0.0.1:2222\", \"10.0.0.2:2222\"]}, \"task\": "
    "{\"type\": \"worker\", \"index\": 0}}'": "multi-host: the cluster's machines do not exist here",
    "python -m srgan_tf.train --config=configs/srgan.py --workdir=runs/srgan --config.distribute=multi_worker":
        "multi-host training (TF_CONFIG's workers do not exist here); tests/test_distribute.py runs two workers "
        "on 127.0.0.1",
    "python -m srgan_tf.train --config=configs/srgan.py --workdir=runs/srgan --config.distribute=tpu "
    "--config.train.batch_size=128 --config.train.precision=mixed_bfloat16": "needs a TPU VM",
    "docker build -t srgan-serving -f Dockerfile --build-arg MODEL_DIR=serving --build-arg MODEL_NAME=srgan exported":
        "no Docker engine here",
    "docker run --rm -p 8500:8500 -p 8501:8501 srgan-serving": "no Docker engine here",
    "curl http://localhost:8501/v1/models/srgan": _SERVING,
    "curl http://localhost:8501/v1/models/srgan/metadata": _SERVING,
    "URL=http://localhost:8501/v1/models/srgan:predict": _SERVING,
    "curl -s -X POST -H 'Content-Type: application/json' -d @docs/rest_examples/serving_default.json $URL": _SERVING,
    "curl -s -X POST -H 'Content-Type: application/json' -d @docs/rest_examples/upscale_float.json $URL": _SERVING,
    "curl -s -X POST -H 'Content-Type: application/json' -d @docs/rest_examples/upscale_image.json $URL "
    "| jq -r '.predictions[0].b64' | base64 -d > upscaled.png": _SERVING,
    "python docs/serving_client.py photo.jpg photo_x4.png --url http://localhost:8501 --model srgan":
        "needs a TF Serving server; tests/test_export.py runs this client against a stand-in HTTP server",
    "pip install 'srgan-tf[mos]'": "needs the package index (internet); CI's install already has the mos extra",
    ".venv/bin/python bench/all.py --generator=models/srgan_x4.keras":
        "36 minutes of benchmarks that rewrite BENCHMARKS.md; bench/ is not part of the installed package",
}


# ---------------------------------------------------------------- what is run


@dataclass(frozen=True)
class Run:
    """How the walk runs one README command: its test id, flags appended, the commands whose outputs it reads,
    and the files (relative to the walk's folder) it must leave."""

    id: str
    extra: tuple[str, ...] = ()
    needs: tuple[str, ...] = ()
    expect: tuple[str, ...] = ()
    server: bool = False  # a server: started, its page fetched, then stopped with Ctrl-C (SIGINT)
    prepare: str | None = None  # the README placeholder file to write first (MY_EXPERIMENT)


_PHASE_FILES = ("generator_srresnet.keras", "generator_srgan.keras", "generator.keras", "config.json")
RUN: dict[str, Run] = {
    ".venv/bin/python -m srgan_tf.train": Run(
        "train-quickstart", TINY_TRAINING,
        expect=tuple(f"runs/quickstart/{f}" for f in (*_PHASE_FILES, "checkpoints/srgan", "tensorboard", "samples"))),
    "python -m srgan_tf.train --config=cpu_demo --workdir=runs/cpu_demo": Run(
        "train-cpu_demo", (*TINY_TRAINING, "--config.evaluate_on=../shared/data/Set5"),
        expect=tuple(f"runs/cpu_demo/{f}" for f in _PHASE_FILES)),
    "python -m srgan_tf.report --workdir=runs/cpu_demo --out=docs/results --markdown=RESULTS.md": Run(
        "report", ("--sets=../shared/data/Set5", "--alphas=0,1"), needs=("train-cpu_demo",),
        expect=("docs/results/results.json", "docs/results/curves.png", "docs/results/interpolation.png",
                "RESULTS.md")),
    "python -m srgan_tf.ship --workdir=runs/cpu_demo --report=docs/results/results.json --out=models": Run(
        "ship", needs=("report",),
        expect=("models/srresnet_x4.keras", "models/srresnet_x4.json", "models/srgan_x4.keras",
                "models/srgan_x4.json")),
    'import keras, srgan_tf\ng = keras.models.load_model("models/srgan_x4.keras")': Run(
        "python-load_model", needs=("ship",)),
    "python -m srgan_tf.train --config=srresnet --config.srresnet.steps=1000 --config.train.batch_size=8": Run(
        "train-srresnet", (*TINY_TRAINING, *TFDS_TO_FOLDER),
        expect=("runs/srresnet/generator_srresnet.keras", "runs/srresnet/generator.keras")),
    "python -m srgan_tf.train --config=path/to/my_experiment.py": Run(
        "train-config-file", TINY_TRAINING, prepare="path/to/my_experiment.py",
        expect=tuple(f"runs/my_experiment/{f}" for f in _PHASE_FILES)),
    "python -m srgan_tf.evaluate --model=bicubic --data=../shared/data/Set5 --out=reports/set5_bicubic": Run(
        "evaluate-bicubic", expect=("reports/set5_bicubic/results.json", "reports/set5_bicubic/results.md",
                                    "reports/set5_bicubic/images")),
    "python -m srgan_tf.evaluate --model=runs/quickstart/generator.keras --data=../shared/data/Set14 "
    "--out=reports/set14": Run(
        "evaluate-generator", needs=("train-quickstart",),
        expect=("reports/set14/results.json", "reports/set14/results.md")),
    "python -m srgan_tf.export --generator=runs/srgan/generator.keras --out=exported": Run(
        "export", needs=("train-quickstart",),
        expect=("exported/serving/srgan/1/saved_model.pb", "exported/serving/srgan/1/assets.extra/srgan_tf.json",
                "exported/serving/srgan/1/assets.extra/tf_serving_warmup_requests", "exported/serving/models.config",
                *(f"exported/tflite/srgan_{v}.tflite" for v in ("fp32", "fp16", "dynamic_int8", "int8")),
                "exported/report.json")),
    "srgan-upscale photo.jpg": Run("upscale", expect=("photo_x4.png",)),
    "srgan-upscale photo.jpg --output=big.webp --quality=90": Run("upscale-webp", expect=("big.webp",)),
    "srgan-upscale scan.tif --outscale=2.5": Run("upscale-outscale", expect=("scan_x2.5.png",)),
    "srgan-upscale photos/ --output=photos_x4/ --model=srresnet": Run(
        "upscale-folder", expect=("photos_x4/a.png", "photos_x4/sub/b.png")),
    "srgan-upscale photo.png --model=exported/tflite/srgan_fp16.tflite --output=out/": Run(
        "upscale-tflite", needs=("export",), expect=("out/photo.png",)),
    "python -m srgan_tf.mos prepare --hr=../shared/data/Set14/HR --calibration_hr=../shared/data/Set5/HR "
    "--method nearest --method bicubic --method srgan=runs/srgan/generator.keras --method hr --out=studies/set14": Run(
        "mos-prepare", needs=("train-quickstart",), expect=("studies/set14",)),
    "python -m srgan_tf.mos serve --study=studies/set14 --port=8000": Run(
        "mos-serve", needs=("mos-prepare",), server=True),
    "python -m srgan_tf.mos report --study=studies/set14": Run(
        "mos-report", needs=("mos-prepare",), expect=("studies/set14/report/report.json",
                                                       "studies/set14/report/report.md")),
    "python -m srgan_tf.interpolate --a=runs/x/generator_srresnet.keras --b=runs/x/generator_srgan.keras "
    "--alpha=0.8 --out=runs/x/generator_blend.keras": Run(
        "interpolate", needs=("train-quickstart",), expect=("runs/quickstart/generator_blend.keras",)),
}


# ---------------------------------------------------------------- reading the README


@dataclass(frozen=True)
class Command:
    text: str  # the command as the tables key it
    line: int  # where it starts in README.md
    python: bool = False


def _blocks(lines: list[str]) -> list[tuple[int, list[str], str]]:
    """(first line number, lines, kind) of every code block: kind "shell", "python" or "output"."""
    blocks, i = [], 0
    while i < len(lines):
        fence = re.match(r"^```(\w*)\s*$", lines[i])
        if fence:
            end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
            kind = "shell" if fence.group(1) in ("bash", "sh", "shell", "console") else "output"
            blocks.append((i + 2, lines[i + 1:end], kind))
            i = end + 1
        elif lines[i].startswith("    ") and (i == 0 or not lines[i - 1].strip()):
            end = i
            while end < len(lines) and (lines[end].startswith("    ") or not lines[end].strip()):
                end += 1
            body = [line[4:] for line in lines[i:end]]
            while body and not body[-1].strip():
                body.pop()
            kind = "python" if re.match(r"(import|from) \w", body[0]) else "shell"
            blocks.append((i + 1, body, kind))
            i = end
        else:
            i += 1
    return blocks


def _without_comment(line: str) -> str:
    """The line up to a `#` comment outside quotes."""
    quote, out = None, []
    for ch in line:
        if quote is None and ch == "#" and (not out or out[-1].isspace()):
            break
        if ch in "'\"":
            quote = None if quote == ch else (ch if quote is None else quote)
        out.append(ch)
    return "".join(out).rstrip()


def readme_commands(text: str) -> list[Command]:
    """Every command of the README's shell blocks, and each Python block as one command, in README order."""
    commands = []
    for first, body, kind in _blocks(text.splitlines()):
        if kind == "python":
            commands.append(Command("\n".join(body), first, python=True))
        if kind != "shell":
            continue
        i = 0
        while i < len(body):
            start, logical = i, body[i]
            while logical.endswith("\\") and i + 1 < len(body):
                i += 1
                logical = logical[:-1].rstrip() + " " + body[i].strip()
            i += 1
            logical = _without_comment(logical).strip()
            for part in (p.strip() for p in logical.split(" && ")):
                if part:
                    commands.append(Command(re.sub(r"\s+", " ", part), first + start))
    return commands


COMMANDS = readme_commands(README.read_text())


def test_every_readme_command_is_run_or_listed_with_a_reason():
    texts = {c.text for c in COMMANDS}
    unaccounted = [f"README.md:{c.line}: {c.text}" for c in COMMANDS if c.text not in RUN and c.text not in NOT_RUN]
    assert unaccounted == [], "add these to RUN or NOT_RUN in tests/test_readme.py"
    assert sorted((set(RUN) | set(NOT_RUN)) - texts) == [], "no longer in README.md: update the tables"
    assert set(RUN).isdisjoint(NOT_RUN)
    assert all(reason.strip() for reason in NOT_RUN.values())
    ids = [r.id for r in RUN.values()]
    assert len(set(ids)) == len(ids) and all(n in ids for r in RUN.values() for n in r.needs)


def test_the_reader_finds_the_readmes_kinds_of_block():
    """Indented and fenced blocks, continuations, comments, `&&` chains, Python, and output fences."""
    text = textwrap.dedent("""
        Intro:

            python -m a --x=1 \\
                --y="b # c"   # a comment
            one && two

        ```bash
        three --url http://h:1/#frag
        ```

        ```
        printed output
        ```

            import keras, srgan_tf
            g = 1
    """).lstrip("\n")
    got = [(c.text, c.python) for c in readme_commands(text)]
    assert got == [('python -m a --x=1 --y="b # c"', False), ("one", False), ("two", False),
                   ("three --url http://h:1/#frag", False), ("import keras, srgan_tf\ng = 1", True)]


# ---------------------------------------------------------------- the two installs and their walk folders


@dataclass
class Walk:
    """One install's walk: its interpreter, its `srgan-upscale` script, its folder, and which commands passed."""

    python: str
    upscale_script: Path
    folder: Path
    passed: set[str] = field(default_factory=set)


def _inputs(folder: Path, set5: Path) -> None:
    """The README's example images, small so the full-size shipped generators are quick on them."""
    first, second = (np.asarray(Image.open(p).convert("RGB")) for p in sorted((set5 / "HR").glob("*.png"))[:2])
    Image.fromarray(first[100:148, 100:148]).save(folder / "photo.jpg", quality=95)
    Image.fromarray(first[150:190, 120:160]).save(folder / "photo.png")
    Image.fromarray(second[100:132, 100:140]).save(folder / "scan.tif")
    (folder / "photos" / "sub").mkdir(parents=True)
    Image.fromarray(first[:32, :32]).save(folder / "photos" / "a.png")
    Image.fromarray(second[:24, :40]).save(folder / "photos" / "sub" / "b.jpg", quality=95)


def _walk_folder(root: Path, shared_data: Path) -> Path:
    """root/work, with root/shared/data linked to the benchmark data as ../shared/data is beside a checkout."""
    (root / "shared").mkdir(parents=True)
    (root / "shared" / "data").symlink_to(shared_data.resolve(), target_is_directory=True)
    work = root / "work"
    work.mkdir()
    _inputs(work, shared_data / "Set5")
    return work


@pytest.fixture(scope="module")
def walks(tmp_path_factory, shared_data) -> dict[str, Walk]:
    """The development install's walk now; the non-editable install's, made on first use."""
    from test_package import install_non_editable

    class Walks(dict):
        def __missing__(self, name: str) -> Walk:
            if name == "dev":
                walk = Walk(sys.executable, Path(sys.executable).parent / "srgan-upscale",
                            _walk_folder(tmp_path_factory.mktemp("walk_dev"), shared_data))
            else:
                python, site = install_non_editable(tmp_path_factory.mktemp("install"))
                walk = Walk(str(python), site / "bin" / "srgan-upscale",
                            _walk_folder(tmp_path_factory.mktemp("walk_installed"), shared_data))
            self[name] = walk
            return walk

    return Walks()


# ---------------------------------------------------------------- running one command


def _argv(command: str, run: Run, walk: Walk) -> list[str]:
    for old, new in RUNS.items():
        command = command.replace(old, new)
    argv = shlex.split(command)
    if argv[0] in ("python", "python3", ".venv/bin/python"):
        argv[0] = walk.python
    elif argv[0] == "srgan-upscale":
        argv[:1] = [walk.python, str(walk.upscale_script)]
    return argv + list(run.extra)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(argv: list[str], cwd: Path) -> tuple[int, str]:
    """Starts the server, fetches its page, stops it with SIGINT; returns (exit status, what it printed)."""
    port = _free_port()
    argv = [re.sub(r"^--port=\d+$", f"--port={port}", a) for a in argv]
    proc = subprocess.Popen(argv, cwd=cwd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    page, deadline = None, time.monotonic() + 120
    try:
        while page is None and proc.poll() is None and time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as response:
                    page = (response.status, response.read().decode())
            except OSError:
                time.sleep(0.5)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        try:
            output = proc.communicate(timeout=30)[0]
        except subprocess.TimeoutExpired:
            proc.kill()
            output = proc.communicate()[0]
    assert page is not None and page[0] == 200 and "<html" in page[1].lower(), \
        f"no page on http://127.0.0.1:{port}/:\n{output[-3000:]}"
    return proc.returncode, output


WALK = [(install, command) for install in ("dev", "installed") for command in COMMANDS if command.text in RUN]


@pytest.mark.slow
@pytest.mark.parametrize("install,command", WALK, ids=[f"{i}-{RUN[c.text].id}" for i, c in WALK])
def test_readme_command(walks, install, command):
    """The command exits 0 and leaves the files the README promises."""
    walk, run = walks[install], RUN[command.text]
    missing = [n for n in run.needs if n not in walk.passed]
    assert not missing, f"needs the outputs of {', '.join(missing)}, which did not pass in this walk"
    if run.prepare:
        (walk.folder / run.prepare).parent.mkdir(parents=True, exist_ok=True)
        (walk.folder / run.prepare).write_text(MY_EXPERIMENT)
    if command.python:
        argv = [walk.python, "-c", command.text + "\nprint(type(g).__name__, g.count_params())"]
    else:
        argv = _argv(command.text, run, walk)
    started = time.monotonic()
    if run.server:
        status, output = _serve(argv, walk.folder)
        assert status in (0, 130), f"{shlex.join(argv)}: exit {status}\n{output[-3000:]}"
    else:
        res = subprocess.run(argv, cwd=walk.folder, env=ENV, capture_output=True, text=True, timeout=TIMEOUT)
        output = res.stdout + res.stderr
        assert res.returncode == 0, f"{shlex.join(argv)}: exit {res.returncode}\n{output[-3000:]}"
    print(f"{install} {run.id}: {time.monotonic() - started:.1f} s")
    absent = [p for p in run.expect if not (walk.folder / p).exists()]
    assert absent == [], f"{shlex.join(argv)} did not write {absent}\n{output[-2000:]}"
    if command.python:
        assert re.search(r"^Functional \d+$", output, re.M), output[-2000:]
    walk.passed.add(run.id)

"""The training progress display: it counts the phase's steps (also when resumed), and writes plain lines
with no control characters when stdout is not a terminal."""

import io
import re
import sys

import pytest
from conftest import tiny_config

from srgan_tf import train

# Each test is whole training runs (train.run), slow like the other such tests: about 30 s of the fast lane.
pytestmark = pytest.mark.slow

LINE = re.compile(r"^srresnet (\d+)/(\d+) - ")


def _counts(text: str) -> list[str]:
    return [m.group(1) + "/" + m.group(2) for line in text.splitlines() if (m := LINE.match(line))]


def _config(steps: int):
    c = tiny_config(srresnet_steps=steps)
    c.phases, c.train.log_every, c.train.checkpoint_every, c.train.verbose = "srresnet", 5, 5, 1
    return c


def test_a_redirected_log_gets_one_plain_line_per_log_period_counting_steps(tmp_path, capsys):
    train.run(_config(12), tmp_path)
    out = capsys.readouterr().out
    assert not {"\x1b", "\b", "\r"} & set(out), out[-500:]
    assert _counts(out) == ["5/12", "10/12", "12/12"], out[-2000:]
    last = [line for line in out.splitlines() if LINE.match(line)][-1]
    assert "s/step" in last and "ETA 0s" in last and "content_loss: " in last

    resumed = _config(20)  # the same workdir: resumes at step 12
    train.run(resumed, tmp_path)
    out = capsys.readouterr().out
    assert "srresnet: steps 12..20" in out
    assert _counts(out) == ["15/20", "20/20"], out[-2000:]
    first = [line for line in out.splitlines() if LINE.match(line)][0]
    assert "ETA " in first  # measured over the resumed run's own steps


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_on_a_terminal_one_line_is_redrawn_in_place_up_to_the_last_step(tmp_path, monkeypatch):
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stdout", terminal)
    train.run(_config(6), tmp_path)
    out = terminal.getvalue()
    assert "\x1b" not in out and "\b" not in out
    redraws = [part.strip() for part in out.split("\r")[1:]]
    steps = [int(LINE.match(r).group(1)) for r in redraws]
    assert steps == sorted(steps) and steps[-1] == 6 and all(LINE.match(r).group(2) == "6" for r in redraws)
    assert out.endswith("\n")

"""One run per workdir: a second is refused, a dead owner's lock is taken over."""

import json
import socket
import subprocess
import sys

import pytest

from srgan_tf.lock import LOCK_FILE, WorkdirBusyError, workdir_lock


def test_a_second_run_is_refused_while_the_first_holds_the_workdir(tmp_path):
    with workdir_lock(tmp_path) as path:
        owner = json.loads(path.read_text())
        assert owner["host"] == socket.gethostname()
        with pytest.raises(WorkdirBusyError, match=f"pid {owner['pid']}"), workdir_lock(tmp_path):
            pass
    assert not (tmp_path / LOCK_FILE).exists()  # released at the end


def test_a_lock_left_by_a_dead_process_is_taken_over(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (tmp_path / LOCK_FILE).write_text(json.dumps({"pid": int(dead.stdout), "host": socket.gethostname()}))
    with workdir_lock(tmp_path) as path:
        assert json.loads(path.read_text())["pid"] != int(dead.stdout)


def test_a_half_written_lock_is_stale_and_another_hosts_lock_is_respected(tmp_path):
    (tmp_path / LOCK_FILE).write_text('{"pid": 12')
    with workdir_lock(tmp_path):
        pass
    (tmp_path / LOCK_FILE).write_text(json.dumps({"pid": 1, "host": "some-other-machine"}))
    with pytest.raises(WorkdirBusyError, match="some-other-machine"), workdir_lock(tmp_path):
        pass

"""Usage errors and Ctrl-C through the installed `harness` entry point, as a user meets them.

Run as subprocesses of the console script pip installed, so whatever typer/click the environment
resolved (typer >= 0.26 vendors its own click) is what is tested: never a traceback.
"""

from __future__ import annotations

import os
from pathlib import Path
import shutil
import signal
import subprocess
import sys
import time

import pytest
import typer

from harness.cli import app
from conftest import make_root

HARNESS_BIN = Path(sys.executable).with_name("harness")
if not HARNESS_BIN.exists():  # e.g. a system python with the scripts elsewhere on PATH
    HARNESS_BIN = Path(shutil.which("harness") or HARNESS_BIN)

pytestmark = pytest.mark.skipif(not HARNESS_BIN.exists(), reason="the harness console script is not installed")

COMMANDS = sorted(typer.main.get_command(app).commands)


def harness(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([str(HARNESS_BIN), *args], capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def assert_usage_error(proc: subprocess.CompletedProcess, command: str, message: str) -> None:
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr + proc.stdout
    assert f"Error: {message}" in proc.stderr
    if "requires an argument" not in message:  # click names the option but prints no usage for these
        assert f"Usage: harness {command}".rstrip() in proc.stderr


def test_every_command_is_covered():
    # the list below must grow with the CLI: a new command gets the same checks
    assert {"run", "evaluate", "verify", "report", "compare", "train", "validate"} <= set(COMMANDS)


@pytest.mark.parametrize("command", COMMANDS)
def test_unknown_option_on_every_command_is_a_usage_error(command):
    assert_usage_error(harness(command, "--no-such-option"), command, "No such option: --no-such-option")


@pytest.mark.parametrize("args,command,message", [
    (["run", "--codec"], "run", "Option '--codec' requires an argument"),
    (["run", "--codec", "zlib", "--jobs"], "run", "Option '--jobs' requires an argument"),
    (["run", "--codec", "zlib", "--jobs", "two"], "run", "Invalid value for '--jobs'"),
    (["run", "--codec", "zlib", "--limit", "1.5"], "run", "Invalid value for '--limit'"),
    (["verify"], "verify", "Missing argument"),
    (["compare", "paper-vtm"], "compare", "Missing argument"),
    (["preprocess", "--task", "cls"], "preprocess", "Missing argument"),
    (["no-such-command"], "", "No such command 'no-such-command'"),
])
def test_missing_values_and_bad_types_are_usage_errors(args, command, message):
    assert_usage_error(harness(*args), command, message)


def test_no_arguments_shows_the_command_list():
    proc = harness()
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "Commands:" in proc.stdout + proc.stderr


def test_help_and_version_exit_zero():
    assert harness("run", "--help").returncode == 0
    proc = harness("version")
    assert proc.returncode == 0 and proc.stdout.strip()


@pytest.mark.slow
def test_ctrl_c_prints_the_resume_hint_and_keeps_finished_jobs(tmp_path):
    root = make_root(tmp_path / "d", cls_ids=tuple(f"img_{i}" for i in range(12)))
    out = tmp_path / "run"
    tests = str(Path(__file__).parent)  # a codec slow enough (0.3 s a job) to be caught halfway under any load
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "FCM_HARNESS_PLUGINS": "plugins_for_tests.slow_codec",
           "PYTHONPATH": os.pathsep.join(filter(None, [tests, os.environ.get("PYTHONPATH")]))}
    proc = subprocess.Popen([str(HARNESS_BIN), "run", "--codec", "slowzlib", "--data-root", str(root), "--task", "cls",
                             "--jobs", "1", "--no-progress", "--out", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.time() + 120
    while time.time() < deadline and len(list((out / "records").rglob("*.json"))) < 3:
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    done = len(list((out / "records").rglob("*.json")))
    assert 0 < done < 60, "the run must be interrupted halfway"
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert "finished jobs are kept; run the same command again to resume" in err

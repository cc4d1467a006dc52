"""Running external encoders and decoders safely (for codec plugins).

Argument lists only (never a shell string), a timeout that kills the whole
process group (an encoder may spawn helpers), and failures reported with the
tool's last log lines.
"""

from __future__ import annotations

from collections.abc import Sequence
import os
from pathlib import Path
import signal
import subprocess

from harness.errors import CodecError
from harness.npyio import atomic_write_bytes


def _tail(text: bytes, lines: int = 8) -> str:
    decoded = text.decode("utf-8", errors="replace").strip().splitlines()
    return " | ".join(decoded[-lines:])


def run_tool(args: Sequence[str | os.PathLike], *, timeout: float | None = None, stdin: bytes | None = None,
             cwd: str | Path | None = None, log: Path | None = None, name: str | None = None) -> bytes:
    """Run a tool and return its stdout; raise CodecError with its last log lines on failure.

    On timeout the process group is killed and nothing is left running. When
    `log` is given, stdout and stderr are saved there (encoder logs are kept).
    """
    label = name or Path(str(args[0])).name
    try:
        proc = subprocess.Popen([str(a) for a in args], stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=cwd, start_new_session=True)
    except OSError as exc:
        raise CodecError(f"{label}: cannot start {args[0]} ({exc.strerror or exc})") from None
    try:
        out, err = proc.communicate(stdin, timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        raise CodecError(f"{label}: timed out after {timeout:g} s and was killed; last output: {_tail(err + out)}") from None
    except BaseException:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise
    if log is not None:
        atomic_write_bytes(log, out + b"\n--- stderr ---\n" + err)
    if proc.returncode != 0:
        raise CodecError(f"{label}: exit code {proc.returncode}; last output: {_tail(err + out)}")
    return out

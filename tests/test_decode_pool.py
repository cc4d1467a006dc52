"""The decode pool: decode-only workers, reused, that survive hostile decoders (harness.decode_pool)."""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor
import multiprocessing
from pathlib import Path

import numpy as np
import pytest

from harness.decode_pool import DecodeJob, DecodeLimits, cap_message, decode_and_hash, decode_jobs, timeout_message
from harness.jobs import canonical_hash
from harness.results import sha256_bytes
from harness.runner import RunRequest, execute
from harness.verify import verify_jobs, verify_run

HOSTILE = ("plugins_for_tests.hostile",)


def _stream(root: Path, name: str, mode: bytes, seed: int) -> DecodeJob:
    """A bitstream of the hostile codec under root/bitstreams/ and the job that checks it."""
    frame = np.random.default_rng(seed).integers(0, 1024, (4, 6), dtype=np.uint16)
    data = mode + frame.shape[0].to_bytes(4, "little") + frame.astype("<u2").tobytes()
    path = root / "bitstreams" / f"{name}.bin"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return DecodeJob(str(root), "hostile", (), HOSTILE, f"bitstreams/{name}.bin", len(data), sha256_bytes(data),
                     canonical_hash(frame), name)


def _fine(root: Path, count: int) -> list[DecodeJob]:
    return [_stream(root, f"fine{i}", b"o", i) for i in range(count)]


def test_results_equal_the_old_fresh_process_path_on_a_real_run(data_root, tmp_path):
    run = execute(RunRequest(codec="zlib", data_root=data_root, out=tmp_path / "run", jobs=1, progress=False,
                             rate_points=[3])).run_dir
    jobs = verify_jobs(run)
    tampered = run / jobs[0].bitstream_path  # one mismatch, so both paths have a failure to agree on
    data = tampered.read_bytes()
    tampered.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn"), max_tasks_per_child=1) as pool:
        old = list(pool.map(decode_and_hash, jobs))
    new = verify_run(run, workers=2)
    assert len(new) == len(jobs) == 4
    assert [(r.label, r.ok, r.problem) for r in new] == [(r.label, r.ok, r.problem) for r in old]
    assert [r.ok for r in new].count(False) == 1 and "sha256" in new[0].problem


def test_a_worker_is_reused_across_bitstreams(tmp_path):
    seen = []
    results = decode_jobs(_fine(tmp_path, 6), workers=1, on_result=seen.append)
    assert all(r.ok for r in results) and len(seen) == 6
    assert len({r.worker_pid for r in results}) == 1  # one process decoded them all
    assert results[0].worker_pid not in (0, multiprocessing.current_process().pid)


def test_a_decoder_past_the_memory_cap_fails_only_its_job(tmp_path):
    jobs = _fine(tmp_path, 2) + [_stream(tmp_path, "bomb", b"m", 9)] + _fine(tmp_path / "more", 2)
    results = decode_jobs(jobs, workers=1, limits=DecodeLimits(memory_mib=1024, timeout_s=60))
    assert [r.ok for r in results] == [True, True, False, True, True]
    assert results[2].label == "bomb" and results[2].problem == cap_message(1024)


def test_a_decoder_past_the_timeout_is_killed_and_the_rest_pass(tmp_path):
    jobs = [_stream(tmp_path, "hang", b"s", 0)] + _fine(tmp_path, 3)
    results = decode_jobs(jobs, workers=2, limits=DecodeLimits(memory_mib=0, timeout_s=2))
    assert [r.ok for r in results] == [False, True, True, True]
    assert results[0].problem == timeout_message(2) == "decode timed out after 2 s"


@pytest.mark.parametrize("mode, how", [(b"k", "killed by SIGKILL"), (b"x", "exit code 3")])
def test_a_decoder_that_kills_its_process_fails_only_its_job(tmp_path, mode, how):
    jobs = _fine(tmp_path, 2) + [_stream(tmp_path, "killer", mode, 5)] + _fine(tmp_path / "more", 2)
    results = decode_jobs(jobs, workers=1, limits=DecodeLimits(memory_mib=0, timeout_s=60))
    assert [r.ok for r in results] == [True, True, False, True, True]
    assert "the decoder process died while decoding" in results[2].problem and how in results[2].problem
    assert results[1].worker_pid == results[2].worker_pid != results[3].worker_pid  # a fresh worker took over


def test_bytes_that_differ_from_the_recorded_sha256_are_never_decoded(tmp_path):
    job = _stream(tmp_path, "swapped", b"o", 1)
    # same size, and a first byte that would kill the decoder if it were ever decoded
    (tmp_path / job.bitstream_path).write_bytes(b"k" + (tmp_path / job.bitstream_path).read_bytes()[1:])
    results = decode_jobs([job] + _fine(tmp_path, 1), workers=1, limits=DecodeLimits(memory_mib=0, timeout_s=60))
    assert not results[0].ok and "bytes differ from the sha256 in its record" in results[0].problem
    assert results[1].ok and results[0].worker_pid == results[1].worker_pid  # the worker lived on


def test_a_wrong_reconstruction_and_a_raising_decoder_are_reported(tmp_path):
    wrong = _stream(tmp_path, "wrong", b"o", 2)
    wrong = DecodeJob(**{**wrong.__dict__, "recon_sha256": "0" * 64})
    broken = _stream(tmp_path, "short", b"o", 3)
    path = tmp_path / broken.bitstream_path
    data = path.read_bytes()[:-1]  # an odd number of sample bytes: the decoder raises
    path.write_bytes(data)
    broken = DecodeJob(**{**broken.__dict__, "bytes": len(data), "bitstream_sha256": sha256_bytes(data)})
    results = decode_jobs([wrong, broken], workers=2, limits=DecodeLimits(memory_mib=0, timeout_s=60))
    assert results[0].problem == "reconstruction differs from the one recorded at coding time"
    assert results[1].problem.startswith("decode failed: ValueError")


def test_limits_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("FCM_HARNESS_DECODE_MEMORY_MIB", "2048")
    monkeypatch.setenv("FCM_HARNESS_DECODE_TIMEOUT_S", "7.5")
    assert DecodeLimits.default(2) == DecodeLimits(2048, 7.5)
    monkeypatch.delenv("FCM_HARNESS_DECODE_MEMORY_MIB")
    assert 4096 <= DecodeLimits.default(2).memory_mib <= 16384
    monkeypatch.setenv("FCM_HARNESS_DECODE_TIMEOUT_S", "soon")
    from harness.errors import HarnessError

    with pytest.raises(HarnessError, match="FCM_HARNESS_DECODE_TIMEOUT_S"):
        DecodeLimits.default(2)


def test_harness_verify_takes_the_limits_and_reports_each_failure(data_root, tmp_path, capsys):
    from harness.cli import main

    run = execute(RunRequest(codec="zlib", data_root=data_root, out=tmp_path / "run", jobs=1, progress=False,
                             rate_points=[3], tasks=["cls"])).run_dir
    assert main(["verify", str(run), "--memory-mib", "2048", "--timeout", "60"]) == 0
    assert "2 of 2 bitstreams reproduce" in capsys.readouterr().out
    assert main(["verify", str(run), "--memory-mib", "1", "-j", "1"]) == 1  # no interpreter fits in 1 MiB
    out = capsys.readouterr().out
    assert out.count("MISMATCH") == 2 and out.count("memory cap of 1 MiB") == 2 and "0 of 2 bitstreams reproduce" in out

"""The CTC files are checked strictly: an unknown key is an error naming the file, the table
and the closest known key; every key the schema allows is used by the code."""

from __future__ import annotations

from pathlib import Path
import re
import shutil

import pytest

from harness.ctc import builtin_ctc_dir, load_ctc
from harness.ctc_schema import CTC_FILE, DOC_KEYS, LEARNED_KEYS, TASK_KEYS
from harness.errors import CTCError

ROOT = Path(__file__).resolve().parents[1]


def edited_ctc(tmp_path: Path, name: str, file: str, old: str, new: str) -> Path:
    root = Path(shutil.copytree(builtin_ctc_dir(name), tmp_path / name))
    text = (root / file).read_text()
    assert old in text
    (root / file).write_text(text.replace(old, new, 1))
    return root


@pytest.mark.parametrize("name,file,old,new,message", [
    ("mini", "tasks.toml", "max_tokens = 2048", "max_token = 2048",
     r"tasks.toml \[tasks.lm\]: unknown key 'max_token'; did you mean 'max_tokens'\?"),
    ("mini", "tasks.toml", "learned.batch = 8", "learned.bacth = 8",
     r"\[tasks.sal\].learned: unknown key 'bacth'; did you mean 'batch'\?"),
    ("mini", "tasks.toml", "truncation.learned = [-20.0, 20.0]", "truncation.learnd = [-20.0, 20.0]",
     r"\[tasks.sal\].truncation: unknown key 'learnd'; did you mean 'learned'\?"),
    ("paper", "ctc.toml", "bit_depth = 10", "bitdepth = 10",
     r"ctc.toml \[quantization\]: unknown key 'bitdepth'; did you mean 'bit_depth'\?"),
    ("paper", "ctc.toml", "[bpfp]", "[bpfs]", r"ctc.toml: unknown key 'bpfs'; did you mean 'bpfp'\?"),
    ("mini", "ctc.toml", "points = [22, 27, 32, 37, 42]", "point = [22, 27, 32, 37, 42]",
     r"ctc.toml \[rate\] \[handcrafted\]: unknown key 'point'; did you mean 'points'\?"),
])
def test_an_unknown_key_names_file_table_and_closest_key(tmp_path, name, file, old, new, message):
    root = edited_ctc(tmp_path, name, file, old, new)
    with pytest.raises(CTCError, match=message):
        load_ctc(root)


def test_original_bpfp_comes_from_the_ctc(tmp_path):
    assert load_ctc("paper").original_bpfp == 32.0
    root = edited_ctc(tmp_path, "paper", "ctc.toml", "original_bpfp = 32", "original_bpfp = 16")
    assert load_ctc(root).original_bpfp == 16.0


def _schema_keys() -> set[str]:
    keys = set(TASK_KEYS) | set(LEARNED_KEYS)
    for table, sub in CTC_FILE.items():
        keys.add(table)
        for leaf in (sub["*"] if "*" in sub else sub):
            keys.add(leaf)
    return keys - DOC_KEYS


def test_every_key_the_schema_allows_is_read_by_the_code():
    code = "\n".join(p.read_text() for folder in ("harness", "plugins") for p in (ROOT / folder).rglob("*.py")
                     if p.name != "ctc_schema.py")
    unread = sorted(k for k in _schema_keys() if not re.search(rf"[\"']{k}[\"']", code))
    assert unread == [], f"CTC keys nothing reads: {unread}"


def test_the_shipped_ctcs_use_only_schema_keys():
    for name in ("paper", "mini"):
        assert load_ctc(name).tasks  # strict loading passes


def test_a_family_codes_one_input_kind(tmp_path):
    from harness.processing import Preprocessor
    ctc = load_ctc("paper")
    shape = ctc.task("cls").typical_shape()
    assert Preprocessor.for_task(ctc, "cls", "handcrafted", "frame10", shape, "float32").kind == "frame10"
    with pytest.raises(Exception, match=r"family 'handcrafted' codes frame10 frames .*ctc.toml \[families.handcrafted\]\), not frame01"):
        Preprocessor.for_task(ctc, "cls", "handcrafted", "frame01", shape, "float32")


def test_a_codec_on_family_points_must_name_the_family_parameter():
    from harness import CodecSpec, HarnessError
    from harness.runner import codec_rate_points
    ctc = load_ctc("paper")
    qp = CodecSpec(name="ok", version="1", family="handcrafted", input_kind="frame10", factory=dict)
    assert codec_rate_points(qp, ctc, "cls") == (22, 27, 32, 37, 42)
    wrong = CodecSpec(name="wrong", version="1", family="handcrafted", input_kind="frame10", factory=dict,
                      rate_parameter="lambda")
    with pytest.raises(HarnessError, match="which are qp values in CTC fcm-lm-paper, but names its rate parameter"):
        codec_rate_points(wrong, ctc, "cls")


def test_a_training_crop_must_be_a_multiple_of_the_pad_multiple(tmp_path):
    from harness import HarnessError
    from harness.training import training_settings
    ctc = load_ctc("mini")
    assert training_settings(ctc, "sal", {})["pad_multiple"] == 64
    with pytest.raises(HarnessError, match=r"crop \[100, 64\] for 'sal' is not a multiple of the CTC's pad_multiple 64"):
        training_settings(ctc, "sal", {"crop": [100, 64]})


def test_a_family_fingerprint_changes_with_its_conditions_only(tmp_path):
    mini = load_ctc("mini")
    other_family = edited_ctc(tmp_path / "a", "mini", "tasks.toml", "learned.batch = 8", "learned.batch = 4")
    anchors = edited_ctc(tmp_path / "b", "mini", "ctc.toml", '"mini-hyperprior"]', '"mini-hyperprior", "x"]')
    qps = edited_ctc(tmp_path / "c", "mini", "tasks.toml", "qps = [2, 7, 12, 17, 22]", "qps = [2, 7, 12, 17, 27]")
    trunc = edited_ctc(tmp_path / "d", "mini", "tasks.toml", "truncation.handcrafted = [-20.0, 20.0]",
                       "truncation.handcrafted = [-10.0, 10.0]")
    for unchanged in (other_family, anchors):
        assert load_ctc(unchanged).sha256 != mini.sha256
        assert load_ctc(unchanged).family_fingerprint("handcrafted") == mini.family_fingerprint("handcrafted")
    for changed in (qps, trunc):
        assert load_ctc(changed).family_fingerprint("handcrafted") != mini.family_fingerprint("handcrafted")
    assert load_ctc(other_family).family_fingerprint("learned") != mini.family_fingerprint("learned")


def test_families_are_named_for_what_they_code_and_old_names_are_aliases_with_a_warning():
    for name in ("paper", "mini"):
        ctc = load_ctc(name)
        assert {f: ctc.families[f]["input"] for f in ctc.families} == {"handcrafted": "frame10", "learned": "frame01"}
        assert ctc.family_aliases == {"vtm": "handcrafted", "hyperprior": "learned"}
        with pytest.warns(FutureWarning, match="codec family 'vtm' is now 'handcrafted'"):
            assert ctc.truncation("lm" if name == "mini" else "cls", "vtm") == \
                ctc.truncation("lm" if name == "mini" else "cls", "handcrafted")
        with pytest.warns(FutureWarning, match="codec family 'hyperprior' is now 'learned'"):
            assert ctc.rate_parameter("hyperprior") == "lambda"
    # a family's fingerprint hashes its conditions, not its name
    mini = load_ctc("mini")
    with pytest.warns(FutureWarning):
        assert mini.family_fingerprint("vtm") == mini.family_fingerprint("handcrafted")


def test_a_plugin_declaring_an_old_family_name_still_runs_with_a_warning():
    from harness.codec import CodecSpec
    from harness.processing import Preprocessor
    from harness.runner import codec_rate_points

    ctc = load_ctc()
    old = CodecSpec(name="old", version="1", family="hyperprior", input_kind="frame01", factory=dict,
                    rate_parameter="lambda")
    with pytest.warns(FutureWarning, match="declare family=\"learned\""):
        assert codec_rate_points(old, ctc, "cls") == ctc.rate_points("cls", "learned")
    with pytest.warns(FutureWarning):
        pipe = Preprocessor.for_task(ctc, "cls", "vtm", "frame10", (1, 1, 17, 64), "float32")
    assert pipe.kind == "frame10"


def test_an_unknown_family_is_an_error_with_the_closest_name():
    from harness.errors import CTCError

    with pytest.raises(CTCError, match="unknown codec family 'handcraft'; did you mean 'handcrafted'"):
        load_ctc().rate_points("cls", "handcraft")

"""Codec options declared once (harness.options): the harness refuses what does not fit, naming
the codec, the option and what it must be."""

from __future__ import annotations

import pytest

from harness.errors import CodecError
from harness.options import Option, check_options, declared

DECLARATION = {"level": Option("9", "int", minimum=0, maximum=9), "mode": Option("fast", choices=("fast", "slow")),
               "check": Option("1", "bool"), "gain": Option("1.5", "float", minimum=0), "note": "free text"}


def test_values_that_fit_pass_and_plain_strings_are_free_form():
    check_options("c", DECLARATION, {"level": "0", "mode": "slow", "check": "False", "gain": "2e3", "note": "x"})
    assert {name: o.default for name, o in declared(DECLARATION).items()}["note"] == "free text"
    assert declared({"note": "x"})["note"] == Option("x")


@pytest.mark.parametrize("given, message", [
    ({"levle": "3"}, "c: unknown option 'levle'; did you mean 'level'? available: check, gain, level, mode, note"),
    ({"level": "10"}, "c: option level='10' must be at most 9 (int 0..9, default '9')"),
    ({"level": "3.5"}, "c: option level='3.5' must be an integer"),
    ({"mode": "medium"}, "c: option mode='medium' must be one of fast, slow"),
    ({"check": "maybe"}, "c: option check='maybe' must be true or false"),
    ({"gain": "nan"}, "c: option gain='nan' must be finite"),
    ({"gain": "-1"}, "c: option gain='-1' must be at least 0"),
])
def test_what_does_not_fit_is_refused_naming_codec_and_option(given, message):
    with pytest.raises(CodecError) as error:
        check_options("c", DECLARATION, given)
    assert str(error.value).startswith(message)


def test_an_option_of_an_unknown_kind_is_a_plugin_bug():
    with pytest.raises(ValueError, match="kind must be one of"):
        Option("1", "integer")


def test_a_run_with_a_bad_option_stops_before_any_work_naming_it(tmp_path, capsys):
    from harness.cli import main

    assert main(["run", "--codec", "zlib", "--task", "cls", "--limit", "1", "--out", str(tmp_path / "run"),
                 "-o", "level=12"]) != 0
    err = capsys.readouterr().err
    assert "zlib: option level='12' must be at most 9 (int 0..9, default '9')" in err
    assert not (tmp_path / "run" / "records").exists()


def test_every_builtin_codec_declares_options_that_fit_their_own_defaults():
    from harness.registry import default_registry

    for name, registered in default_registry().codecs.items():
        options = declared(registered.spec.options)
        for key, option in options.items():
            assert option.problem(option.default) is None or option.kind == "path", (name, key)

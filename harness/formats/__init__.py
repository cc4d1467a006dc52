"""The files that travel between machines, one typed reader and writer each.

A bundle, a crosscheck report and a leaderboard entry are made on one machine and read on
another, by someone who did not make them: every such file is hostile input. Each module here
owns one file kind: a frozen type, `read_*` (a regular file inside its folder, size-capped, every
field checked, one `FormatError` naming the file and the field) and `*_json` / `write_*` (the one
way to write it). Nothing downstream indexes a raw dict of these files.

    manifest.json       harness.formats.manifest      (bundle: what was coded, by whom)
    crosscheck.json     harness.formats.crosscheck    (a second lab's verdict on one bundle)

run.json is read through `harness.run_meta.RunMeta`, records and result tables through
`harness.results`; they predate this package and keep their readers.
"""

from harness.formats.base import FormatError

__all__ = ["FormatError"]

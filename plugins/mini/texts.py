"""English text that ships with every CPython, for the language samples when no ARC items are given.

The Zen of Python (`this`, unchanged since Python 2.2) and the opening of a
few reference topics from `pydoc_data` (the text of `help("assert")` ...).
The topics change a little between Python releases, so the texts' hash is
part of the dataset's label: datasets made from other texts never mix.
"""

from __future__ import annotations

import codecs
import contextlib
import hashlib
import io

#: (sample id, pydoc topic); the first sample is the Zen of Python
TOPICS = (("pydoc_assert", "assert"), ("pydoc_if", "if"), ("pydoc_while", "while"), ("pydoc_for", "for"),
          ("pydoc_try", "try"), ("pydoc_with", "with"), ("pydoc_lambda", "lambda"))
#: Other topics, none of them in TOPICS: the training features of learned codecs
TRAIN_TOPICS = ("class", "function", "import", "raise", "global", "return", "yield", "del", "nonlocal", "in",
                "integers", "dict", "booleans", "slicings", "identifiers", "calls")
MAX_CHARS = 900


def zen_of_python() -> str:
    with contextlib.redirect_stdout(io.StringIO()):  # `this` prints the Zen when imported
        import this
    return codecs.decode(this.s, "rot13")


def _opening(text: str, limit: int = MAX_CHARS) -> str:
    """The first whole lines of a topic up to `limit` characters."""
    out = ""
    for line in text.strip().splitlines(keepends=True):
        if len(out) + len(line) > limit and out:
            break
        out += line
    return out.strip()


def texts() -> dict[str, str]:
    """Sample id -> text, in dataset order."""
    from pydoc_data.topics import topics

    found = {"zen_of_python": zen_of_python().strip()}
    found.update({sample: _opening(topics[topic]) for sample, topic in TOPICS if topic in topics})
    return found


def training_texts() -> dict[str, str]:
    """Training sample id -> text: the opening of each TRAIN_TOPICS topic this Python has."""
    from pydoc_data.topics import topics

    return {f"pydoc_{topic}": _opening(topics[topic]) for topic in TRAIN_TOPICS if topic in topics}


def texts_key() -> str:
    """Hash of the test and training texts."""
    digest = hashlib.sha256()
    for sample, text in [*texts().items(), *training_texts().items()]:
        digest.update(sample.encode() + b"\0" + text.encode() + b"\0")
    return digest.hexdigest()[:8]

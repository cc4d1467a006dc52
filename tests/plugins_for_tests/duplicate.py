"""Provides a codec named 'zlib' again: a name clash with the built-in plugin."""

from harness import CodecSpec, hookimpl


@hookimpl
def harness_codecs():
    return [CodecSpec(name="zlib", version="9", family="handcrafted", input_kind="frame10", factory=lambda o: None)]

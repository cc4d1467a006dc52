"""A plugin whose hook name is misspelled (`harness_codec`): pluggy alone would never call it."""

from harness import CodecSpec, hookimpl


@hookimpl
def harness_codec():
    return [CodecSpec(name="spelled", version="0.1", family="handcrafted", input_kind="frame10", factory=dict)]

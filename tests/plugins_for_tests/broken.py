"""A plugin whose hook raises: it must be reported, not fatal."""

from harness import hookimpl


@hookimpl
def harness_codecs():
    raise ImportError("needs a library that is not installed")

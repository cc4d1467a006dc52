"""A template codec plugin for fcm-harness (see README.md beside pyproject.toml)."""

from template_codec.codec import LevelsCodec, make_codec
from template_codec.plugin import SPEC

__all__ = ["LevelsCodec", "SPEC", "make_codec"]

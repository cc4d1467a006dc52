"""Anchor result sheets (tidy CSV): the paper's published points and reproduced runs."""

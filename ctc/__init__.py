"""Test conditions as data: one directory per CTC (see paper/)."""

"""Built-in plugins of fcm-harness (installed as the `harness_plugins` package).

Each module is registered through the same entry-point group a third-party
plugin uses (`fcm_harness.plugins` in pyproject.toml) and imports only the
public API (`harness`, `harness.testing`).
"""

"""Plugin modules the tests register through $FCM_HARNESS_PLUGINS or Registry(extra_plugins=...)."""

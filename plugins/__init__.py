"""Charter's built-in plugins (installed as the ``charter_plugins`` package)."""

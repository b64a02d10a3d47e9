"""The engine's two user-facing exceptions, importable without loading the registry (or torch).

``ganforge`` prints either as one line (``ganforge: error: ...``) and exits with status 2.
"""

from __future__ import annotations


class PluginError(Exception):
    """A plugin could not be loaded, was built for another plugin API, or two plugins collide."""


class ConfigError(ValueError):
    """A configuration value is wrong. The message names the key path, the value and the fix."""


__all__ = ["ConfigError", "PluginError"]

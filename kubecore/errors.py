"""Errors the kernel reports to people: each ``str()`` is one clear, complete sentence."""


class KubecoreError(Exception):
    """Base for errors that end a command with a message and a non-zero exit, no traceback."""


class PluginError(KubecoreError):
    """A plugin that was asked for by name is missing, failed to import or is malformed."""


class StartupError(KubecoreError):
    """A component could not start (a port in use, a backend that does not answer...)."""

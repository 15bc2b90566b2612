"""kubecore: the core of a container cluster manager in the shape of Kubernetes v0.5.

A small trio kernel whose pluggy hooks (``kubecore.hookspecs``) define manifest
sources, schedulers, runtimes, proxies and stores; every behaviour ships as a plugin.
A plugin is a plain module of functions marked with :data:`hookimpl`.
"""

from importlib.metadata import PackageNotFoundError, version

from kubecore.hookspecs import hookimpl

try:
    __version__ = version("kubecore")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"

__all__ = ["__version__", "hookimpl"]

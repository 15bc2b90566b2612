"""The controller manager's loops: the replication manager and the endpoints controller.

Both reach the apiserver only through :class:`~kubecore.client.ApiClient`, follow
their resources by list-then-watch (:mod:`kubecore.controllers.watching`), and resync
every ``resync_interval`` seconds. One failing object is logged and skipped; an
unreachable apiserver is retried with backoff, never fatal.
"""

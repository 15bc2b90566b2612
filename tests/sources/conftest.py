"""The kubelet fixtures (runtime_exec in a temporary root) for the source tests."""

from tests.kubelet.conftest import exec_root, start_kubelet  # noqa: F401

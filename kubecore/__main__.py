"""``python -m kubecore``: the same as the ``kubecore`` command."""

from kubecore.cli import main

main(prog_name="kubecore")

"""The kubelet: manifest sources -> merger (desired pods) -> sync loop -> runtime.

With an apiserver, the kubelet also registers its minion and pushes the status of the
pods the apiserver knows (:mod:`kubecore.kubelet.reporter`). The addresses a pod's
ports are published on live in its ``currentState.manifest``: the desired manifest
with each container port's ``hostPort`` and ``hostIP`` set to what the runtime really
publishes (``SandboxInfo.ports``), so a service endpoint is
``<hostIP>:<hostPort>`` of the matching port there.
"""

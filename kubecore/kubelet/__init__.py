"""The kubelet: manifest sources -> merger (desired pods) -> sync loop -> runtime."""

"""The apiserver: v1beta1 REST over the store, served by hypercorn on trio."""

"""The apiserver: v1beta1 REST and watch over the store, served by hypercorn on trio.

Modules, from the wire inwards:

- :mod:`.plugin`: the ``[apiserver]`` section and the component (needs a store plugin).
- :mod:`.server`: hypercorn on trio, HTTP or HTTPS. :mod:`.auth`: bearer tokens.
- :mod:`.app`: the Starlette application. :mod:`.routes`: request handlers (bodies,
  query parameters, ``Status`` errors). :mod:`.errors`: ``StatusError`` and codes.
- :mod:`.registry`: objects <-> store (namespaces, compare-and-swap, selectors), with a
  :mod:`.strategy` per resource: :mod:`.pods`, :mod:`.services` (+ :mod:`.portals`),
  :mod:`.controllers`, :mod:`.minions`, :mod:`.endpoints`, :mod:`.events`.
- :mod:`.bindings`: pod -> host assignment and each host's BoundPods
  (+ :mod:`.envvars`). :mod:`.watch`: streaming watch. :mod:`.keys`: the key layout.
  :mod:`.resources`: the collections and their selector rules.
"""

"""The proxy benchmark's backend: ``python -m bench.backend`` prints its port, then serves.

Each connection's first byte chooses what it does:

- ``B`` bulk sink: read until end of stream into a 4 MiB buffer, reply the byte count
  (8 bytes, big endian) and close.
- ``H`` hashed sink: the same, but reply the SHA-256 of everything after the ``H``.
- ``R`` request/response: the request is :data:`REQUEST_SIZE` bytes including the
  ``R``; reply :data:`REQUEST_SIZE` bytes, wait for end of stream, close.

A few threads accept on one socket, so one slow close never holds up the next client.
Listens on 127.0.0.1 only; stops on SIGTERM/SIGINT.
"""

from __future__ import annotations

import contextlib
import hashlib
import signal
import socket
import sys
import threading

REQUEST_SIZE = 64
BUFFER = 4 * 1024 * 1024
THREADS = 4


def _read_exact(conn: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            break
        data += chunk
    return data


def _sink(conn: socket.socket, buffer: memoryview, hashed: bool) -> None:
    digest = hashlib.sha256()
    total = 0
    while n := conn.recv_into(buffer):
        total += n
        if hashed:
            digest.update(buffer[:n])
    conn.sendall(digest.digest() if hashed else total.to_bytes(8, "big"))


def _handle(conn: socket.socket, buffer: memoryview) -> None:
    mode = conn.recv(1)
    if mode in (b"B", b"H"):
        _sink(conn, buffer, hashed=mode == b"H")
    elif mode == b"R" and len(_read_exact(conn, REQUEST_SIZE - 1)) == REQUEST_SIZE - 1:
        conn.sendall(b"r" * REQUEST_SIZE)
        while conn.recv(4096):
            pass


def _serve(listener: socket.socket) -> None:
    buffer = memoryview(bytearray(BUFFER))
    while True:
        conn, _ = listener.accept()
        with conn:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with contextlib.suppress(OSError):  # a client that went away
                _handle(conn, buffer)


def main() -> None:
    listener = socket.create_server(("127.0.0.1", 0), backlog=4096)
    for _ in range(THREADS):
        threading.Thread(target=_serve, args=(listener,), daemon=True).start()
    print(listener.getsockname()[1], flush=True)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    sys.exit(0)


if __name__ == "__main__":
    main()

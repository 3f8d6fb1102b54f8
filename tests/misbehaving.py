"""A loopback HTTP server that misbehaves on purpose, in a thread, for the deadline tests.

What it does depends on the path asked for:
- `/silent/...` reads the request and never answers;
- `/drip/...` answers 200 (a video, 1 MB long) at once, then sends the body one byte
  every `interval` seconds;
- `/slow-headers/...` sends its status line one byte every `interval` seconds;
- `/endless/...` answers 200, then 64 KiB every 10 ms, forever: fast, never done;
- anything else answers 200 with `BODY`.
Every connection is dropped when the server stops.
"""

from __future__ import annotations

import socketserver
import threading
from collections.abc import Iterator
from contextlib import contextmanager

BODY = b"\x00\x00\x00\x18ftypmp42 not really a video"
VIDEO = b"HTTP/1.1 200 OK\r\nContent-Type: video/mp4\r\nContent-Length: %d\r\n\r\n"


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    interval: float
    stop: threading.Event


class _Handler(socketserver.BaseRequestHandler):
    server: _Server

    def handle(self) -> None:
        request = b""
        while b"\r\n\r\n" not in request:
            chunk = self.request.recv(65536)
            if not chunk:
                return
            request += chunk
        path = request.split(b" ")[1].decode()
        stop, interval = self.server.stop, self.server.interval
        try:
            if path.startswith("/silent/"):
                stop.wait()
            elif path.startswith("/drip/"):
                self.request.sendall(VIDEO % 1_000_000)
                while not stop.wait(interval):
                    self.request.sendall(b"x")
            elif path.startswith("/slow-headers/"):
                for byte in VIDEO % 10:
                    if stop.wait(interval):
                        return
                    self.request.sendall(bytes([byte]))
            elif path.startswith("/endless/"):
                self.request.sendall(VIDEO % 10**12)
                while not stop.wait(0.01):
                    self.request.sendall(bytes(65536))
            else:
                self.request.sendall(VIDEO % len(BODY) + BODY)
        except OSError:  # the client gave up: what these tests want
            pass


@contextmanager
def serving(interval: float = 0.1) -> Iterator[str]:
    """The server's base URL (`http://127.0.0.1:PORT`) while the block runs."""
    server = _Server(("127.0.0.1", 0), _Handler)
    server.interval, server.stop = interval, threading.Event()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.stop.set()
        server.shutdown()
        server.server_close()

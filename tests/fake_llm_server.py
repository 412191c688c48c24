"""A loopback OpenAI-compatible server for the LLM front's tests: every POST is answered by a
test's ``reply(handler)``, which writes server-sent events (``event``, ``delta``, ``DONE``)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

DONE = b"data: [DONE]\n\n"


def event(obj) -> bytes:
    return f"data: {json.dumps(obj)}\n\n".encode()


def delta(text: str) -> bytes:
    return event({"choices": [{"index": 0, "delta": {"content": text}}]})


class Server:
    """Answers every POST with ``reply(handler)``; keeps the requests' bodies and counts the bytes
    it managed to send (a client that stops reading makes the writes fail)."""

    def __init__(self, reply):
        self.sent, self.requests, self.closing = 0, [], threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            owner = server

            def log_message(self, *args):
                pass

            def write(self, data: bytes):
                self.wfile.write(data)
                self.wfile.flush()
                server.sent += len(data)

            def do_POST(self):
                server.requests.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                try:
                    reply(self)
                except OSError:  # the client hung up: what a bounded client does
                    pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True).start()

    def close(self):
        self.closing.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def serve():
    """``serve(reply)`` starts a server; all are closed after the test."""
    servers = []

    def start(reply):
        servers.append(Server(reply))
        return servers[-1]

    yield start
    for s in servers:
        s.close()

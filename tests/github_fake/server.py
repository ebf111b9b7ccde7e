"""Serve a :class:`.GitHubApp` on a real loopback socket, in a thread.

Clients in other processes (the errmesh leader, a benchmark) need a real
URL; the stdlib WSGI server, threaded, is enough for a test GitHub. Two
things it does beyond wsgiref: it resets a connection (SO_LINGER 0, no
answer) when the app asks for a ``reset`` fault, and it wakes handlers held
by a ``timeout`` fault when it shuts down, so leaving ``serve()`` is prompt.
"""

from __future__ import annotations

import socket
import socketserver
import struct
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from wsgiref.simple_server import ServerHandler, WSGIRequestHandler, WSGIServer

from .app import SERVER_KEY, GitHubApp, ResetConnection


class _ServerHandler(ServerHandler):
    status: str | None

    def handle_error(self) -> None:
        if isinstance(sys.exc_info()[1], ResetConnection):
            raise  # to _RequestHandler.handle, which resets the socket
        super().handle_error()

    def close(self) -> None:
        if self.status is None:  # nothing was answered: nothing to log
            self.status = "000 Reset"
        super().close()


class _RequestHandler(WSGIRequestHandler):
    timeout = 30  # seconds a silent client may hold a handler thread
    server: _ThreadingServer

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: tests read the app's records, not access logs."""

    def get_environ(self) -> dict[str, Any]:
        environ = super().get_environ()
        environ[SERVER_KEY] = self.server.stopping
        return environ

    def handle(self) -> None:
        # wsgiref's handle(), with our ServerHandler and the reset path.
        self.raw_requestline = self.rfile.readline(65537)
        if len(self.raw_requestline) > 65536:
            self.send_error(414)
            return
        if not self.parse_request():
            return
        handler = _ServerHandler(
            self.rfile,
            self.wfile,  # type: ignore[arg-type]  # typeshed: BufferedIOBase vs IO[bytes]
            self.get_stderr(),
            self.get_environ(),
            multithread=True,
        )
        handler.request_handler = self  # type: ignore[attr-defined]
        app = self.server.get_app()
        assert app is not None, "serve() sets the app before serving"
        try:
            handler.run(app)
        except ResetConnection:
            # Linger 0 makes close() send RST; closing now (before the
            # server's shutdown(SHUT_WR) would send a FIN) keeps it pure.
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()


class _ThreadingServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = False
    block_on_close = True  # server_close() joins handler threads: no stray writes
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int]) -> None:
        self.stopping = threading.Event()
        super().__init__(address, _RequestHandler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind calls getfqdn(), a reverse DNS lookup that
        # can take seconds in a sandbox; loopback needs none.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)
        self.setup_environ()


@contextmanager
def serve(app: GitHubApp, *, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Run ``app`` on ``host:port`` (0: any free port) and yield its base URL.

    The URL is the API root, including the app's ``prefix``
    (``http://127.0.0.1:PORT`` or ``http://127.0.0.1:PORT/api/v3``). On exit
    the server stops, held ``timeout`` answers are released and every
    handler thread is joined.
    """
    server = _ThreadingServer((host, port))
    server.set_app(app)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="github-fake", daemon=True
    )
    thread.start()
    try:
        yield f"http://{host}:{server.server_port}{app.prefix}"
    finally:
        server.stopping.set()
        server.shutdown()
        server.server_close()
        thread.join()

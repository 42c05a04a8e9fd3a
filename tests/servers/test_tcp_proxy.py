"""The link cutter forwards bytes, cuts open connections, refuses new ones, and comes back."""

import socket
import socketserver
import threading

import pytest

from citygate.servers.tcp_proxy import TcpProxy


class Echo(socketserver.BaseRequestHandler):
    def handle(self):
        while data := self.request.recv(1024):
            self.request.sendall(data)


@pytest.fixture
def proxy():
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Echo)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    p = TcpProxy("127.0.0.1", server.server_address[1])
    p.start()
    yield p
    p.stop()
    server.shutdown()
    server.server_close()


def _echo(port: int, payload: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(payload)
        return s.recv(1024)


def _recv_or_reset(s: socket.socket) -> bytes:
    try:
        return s.recv(10)
    except ConnectionResetError:
        return b""


def test_forwards_cuts_and_restores(proxy):
    assert _echo(proxy.port, b"hello") == b"hello"
    held = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
    held.sendall(b"x")
    assert held.recv(10) == b"x"
    proxy.cut()
    held.settimeout(5)
    assert _recv_or_reset(held) == b""  # closed by the cut
    held.close()
    try:
        answer = _echo(proxy.port, b"while down")
    except OSError:
        answer = b""
    assert answer == b""  # refused or reset, never forwarded
    proxy.restore()
    assert _echo(proxy.port, b"back") == b"back"

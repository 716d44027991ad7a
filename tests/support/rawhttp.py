"""HTTP/1.1 over a bare socket, for tests that must misbehave as a client.

The ``openai`` SDK and urllib are well-behaved clients: they cannot send a header
twice in different cases, stop reading half-way, read one byte a second or
hang up after the first event. These helpers can. Responses are parsed just
enough to check them: status, headers (in order, repeated ones kept), and the
body with chunked transfer decoding.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

Header = tuple[str, str]


@dataclass
class RawResponse:
    status: int
    headers: list[Header]
    body: bytes
    complete: bool  # the body ended as framed (last chunk / content-length), not by a dropped connection

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)


def connect(port: int, timeout: float = 10.0, rcvbuf: int | None = None) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.settimeout(timeout)
    sock.connect(("127.0.0.1", port))
    return sock


def send_request(
    sock: socket.socket, method: str, target: str, headers: Sequence[Header], body: bytes = b"", host: str = "127.0.0.1"
) -> None:
    """Send one request with exactly these headers (plus Host and Content-Length), bytes as given."""
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host}"]
    lines += [f"{name}: {value}" for name, value in headers]
    if body or method == "POST":
        lines.append(f"Content-Length: {len(body)}")
    sock.sendall("\r\n".join(lines).encode("utf-8") + b"\r\n\r\n" + body)


class ResponseReader:
    """Reads one response from ``sock``, a little at a time if asked to."""

    def __init__(self, sock: socket.socket, read_size: int = 65536) -> None:
        self.sock = sock
        self.read_size = read_size
        self._buffer = b""
        self.eof = False
        self.complete = False
        self._headers: list[Header] = []

    def _fill(self) -> bool:
        if self.eof:
            return False
        try:
            data = self.sock.recv(self.read_size)
        except ConnectionResetError:
            data = b""
        if not data:
            self.eof = True
            return False
        self._buffer += data
        return True

    def head(self) -> tuple[int, list[Header]]:
        while b"\r\n\r\n" not in self._buffer:
            if not self._fill():
                raise ConnectionError("connection closed before the response head")
        head, self._buffer = self._buffer.split(b"\r\n\r\n", 1)
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        headers = [(k.strip(), v.strip()) for k, _, v in (line.partition(":") for line in header_lines)]
        self._headers = headers
        return int(status_line.split(" ", 2)[1]), headers

    def body_pieces(self) -> Iterator[bytes]:
        """Yield body bytes as they arrive (chunked or content-length or until close); sets ``complete``."""
        self.complete = False
        lookup = {k.lower(): v for k, v in self._headers}
        if lookup.get("transfer-encoding", "").lower() == "chunked":
            while True:
                while b"\r\n" not in self._buffer:
                    if not self._fill():
                        return
                size_line, self._buffer = self._buffer.split(b"\r\n", 1)
                size = int(size_line.split(b";")[0], 16)
                while len(self._buffer) < size + 2:
                    if not self._fill():
                        if self._buffer:
                            yield self._buffer[:size]
                        return
                piece, self._buffer = self._buffer[:size], self._buffer[size + 2 :]
                if size == 0:
                    self.complete = True
                    return
                yield piece
        elif "content-length" in lookup:
            remaining = int(lookup["content-length"])
            while remaining > 0:
                if not self._buffer and not self._fill():
                    return
                piece, self._buffer = self._buffer[:remaining], self._buffer[remaining:]
                remaining -= len(piece)
                yield piece
            self.complete = True
        else:
            while self._buffer or self._fill():
                piece, self._buffer = self._buffer, b""
                yield piece
            self.complete = True


def request(
    port: int, method: str, target: str, headers: Sequence[Header], body: bytes = b"", timeout: float = 15.0, host: str = "127.0.0.1"
) -> RawResponse:
    """One request on a fresh connection; the whole response."""
    with connect(port, timeout) as sock:
        send_request(sock, method, target, [*headers, ("Connection", "close")], body, host)
        reader = ResponseReader(sock)
        status, response_headers = reader.head()
        body_out = b"".join(reader.body_pieces())
        return RawResponse(status, response_headers, body_out, reader.complete)

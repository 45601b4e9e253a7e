"""A TCP proxy in front of the shared PostgreSQL server that a test can cut at a chosen
point of a session: the connection is lost exactly there, as in a network failure, while
the server itself stays up for everyone else.

A cut is armed with a pattern of the frontend protocol (``b"COMMIT\\x00"``: the simple
query psycopg sends to commit) and where to cut:

- ``"before"``: the message never reaches the server (nothing of it happens);
- ``"reply"``: the message reaches the server, which runs it and answers; the answer is
  dropped and the connection closed (a commit that landed but was reported as failed).
"""

from __future__ import annotations

import contextlib
import socket
import threading
from typing import Literal

__all__ = ["CuttingProxy", "Where"]

Where = Literal["before", "reply"]


class _Session:
    def __init__(self, client: socket.socket, server: socket.socket) -> None:
        self.client = client
        self.server = server
        self.drop_reply = False
        self.closed = threading.Event()

    def close(self) -> None:
        self.closed.set()
        for end in (self.client, self.server):
            with contextlib.suppress(OSError):  # already shut
                end.shutdown(socket.SHUT_RDWR)
            end.close()


class CuttingProxy:
    """Forwards ``127.0.0.1:<port>`` to ``target``; :meth:`arm` cuts the next session that
    sends a message matching a pattern."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._armed: tuple[bytes, Where] | None = None
        self.cuts = 0
        self.cut = threading.Event()
        self._sessions: list[_Session] = []
        self._stopped = False
        threading.Thread(target=self._accept, daemon=True).start()

    def arm(self, pattern: bytes, where: Where) -> None:
        """Cut the next session that sends ``pattern`` (once)."""
        with self._lock:
            self.cut.clear()
            self._armed = (pattern, where)

    def disarm(self) -> None:
        with self._lock:
            self._armed = None

    def close(self) -> None:
        """Cut every session and refuse new ones (the server gone, as the client sees it)."""
        self._stopped = True
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the accepting thread
        self._listener.close()
        for session in list(self._sessions):
            session.close()

    def _accept(self) -> None:
        while not self._stopped:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            for end in (client, server):  # as libpq does: no Nagle delay on small messages
                end.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            session = _Session(client, server)
            self._sessions.append(session)
            threading.Thread(target=self._upstream, args=(session,), daemon=True).start()
            threading.Thread(target=self._downstream, args=(session,), daemon=True).start()

    def _matches(self, chunk: bytes) -> Where | None:
        with self._lock:
            armed = self._armed
            if armed is None or armed[0] not in chunk:
                return None
            self._armed = None
            return armed[1]

    def _fired(self, session: _Session) -> None:
        session.close()
        with self._lock:
            self.cuts += 1
        self.cut.set()

    def _upstream(self, session: _Session) -> None:
        try:
            while chunk := session.client.recv(65536):
                where = self._matches(chunk)
                if where == "before":
                    self._fired(session)
                    return
                if where == "reply":
                    session.drop_reply = True
                session.server.sendall(chunk)
        except OSError:
            pass
        session.close()

    def _downstream(self, session: _Session) -> None:
        try:
            while chunk := session.server.recv(65536):
                if session.drop_reply:
                    self._fired(session)
                    return
                session.client.sendall(chunk)
        except OSError:
            pass
        session.close()

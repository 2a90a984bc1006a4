"""What both emulators share: a server running in a background thread of this process."""
from __future__ import annotations

import threading
from typing import Any


class BackgroundServer:
    """Subclasses set `_server` (with shutdown/server_close) and `_thread` in their start()."""

    _server: Any = None
    _thread: threading.Thread | None = None

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._server = self._thread = None

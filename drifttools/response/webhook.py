"""``drifttools respond --listen``: Falcosidekick's webhook output, answered on one address.

Falcosidekick POSTs each alert's JSON (``webhook.address``); the shared secret comes in a
header it is configured to send (``webhook.customheaders: "X-Drifttools-Secret:..."``),
compared in constant time. Bodies are bounded; bad input gets a clear 4xx and a one-line
JSON reason. Alerts are handled one at a time (one server thread), so two responses never
race on one container.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

from drifttools.response.falco import Dispatcher, parse_alert

SECRET_HEADER = "X-Drifttools-Secret"
#: The largest alert body taken (Falco alerts are a few KiB).
MAX_BODY = 1 << 20
_READ_TIMEOUT = 10


def make_server(
    host: str,
    port: int,
    dispatcher: Dispatcher,
    secret: str,
    *,
    record: Callable[[dict[str, Any]], None],
    max_body: int = MAX_BODY,
) -> HTTPServer:
    """A server on ``host:port`` (port 0: any free one) handing each alert to
    ``dispatcher``; each decision (and each refused request) goes to ``record``."""
    expected = secret.encode()

    class Handler(BaseHTTPRequestHandler):
        timeout = _READ_TIMEOUT
        server_version = "drifttools"

        def log_message(self, format: str, *args: Any) -> None:
            return  # decisions are recorded instead

        def _answer(self, status: int, body: dict[str, Any]) -> None:
            data = (json.dumps(body, ensure_ascii=False) + "\n").encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _refuse(self, status: int, reason: str) -> None:
            record({"decision": "refused", "status": status, "reason": reason})
            self._answer(status, {"error": reason})

        def do_GET(self) -> None:
            self._refuse(405, "POST the alert JSON")

        do_PUT = do_DELETE = do_GET

        def do_POST(self) -> None:
            given = (self.headers.get(SECRET_HEADER) or "").encode()
            if not hmac.compare_digest(given, expected):
                return self._refuse(401, f"missing or wrong {SECRET_HEADER} header")
            length = self.headers.get("Content-Length")
            if length is None or not length.isdigit():
                return self._refuse(411, "a Content-Length is needed")
            if int(length) > max_body:
                return self._refuse(413, f"body over {max_body} bytes")
            try:
                alert = parse_alert(json.loads(self.rfile.read(int(length))))
            except ValueError as exc:
                return self._refuse(400, f"not a Falco alert: {exc}")
            decision = dispatcher.handle(alert)
            record(decision)
            self._answer(200, decision)

    return HTTPServer((host, port), Handler)

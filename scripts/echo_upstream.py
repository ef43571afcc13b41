"""A tiny upstream that answers every request with the headers it received, as JSON.

Used by the demo and by end-to-end tests to see exactly which Remote-* headers reached the
protected service. Standard library only; binds to loopback.

    python scripts/echo_upstream.py --port 9092
"""

from __future__ import annotations

import argparse
import json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class EchoHandler(BaseHTTPRequestHandler):
    server_version = "echo"

    def _answer(self) -> None:
        body = json.dumps(
            {
                "method": self.command,
                "path": self.path,
                "headers": {name.lower(): value for name, value in self.headers.items()},
                # Every field as received, repeated ones too (the mapping keeps only the last).
                "header_list": [[name.lower(), value] for name, value in self.headers.items()],
            },
            indent=2,
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = do_OPTIONS = _answer

    def log_message(self, format: str, *args: object) -> None:
        return


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=9092)
    parser.add_argument("--address", default="127.0.0.1")
    args = parser.parse_args()
    ThreadingHTTPServer((args.address, args.port), EchoHandler).serve_forever()


if __name__ == "__main__":
    main()

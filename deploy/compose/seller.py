"""A sample seller API for the compose demo: JSON on every path, standard library only.

Subgate runs in this container's network namespace (a pod's shape) and forwards allowed
requests to 127.0.0.1:3000; binding to loopback keeps buyers from skipping Subgate.

  GET /anything        200 {"path", "subscriber_id", "remaining"}: one unit billed
  GET /bulk?units=N    200, with x-subgate-usage: N so that Subgate bills N units
  GET /fail            500: not billed under usage_count_on = 2xx
"""

import argparse
import json
import signal
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


class SellerHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as Subgate's upstream pool expects

    def do_GET(self):
        url = urlsplit(self.path)
        status, extra = 200, {}
        if url.path == "/fail":
            status = 500
        elif url.path == "/bulk":
            units = parse_qs(url.query).get("units", ["1"])[0]
            extra["x-subgate-usage"] = units if units.isdigit() else "1"
        body = json.dumps({
            "path": url.path,
            "subscriber_id": self.headers.get("x-subgate-subscriber-id"),
            "remaining": self.headers.get("x-subgate-remaining"),
            "ok": status == 200,
        }).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        for name, value in extra.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt, *args):
        sys.stdout.write("seller: %s %s\n" % (self.address_string(), fmt % args))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bind", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=3000)
    args = parser.parse_args()
    server = ThreadingHTTPServer((args.bind, args.port), SellerHandler)
    # docker stop sends SIGTERM; exit cleanly instead of being killed after the grace period.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print("seller listening on http://%s:%d" % (args.bind, args.port), flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()

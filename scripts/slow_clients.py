"""Slow clients against the service: can a normal client still get its answer in time?

    python3 scripts/slow_clients.py --url http://127.0.0.1:8000                   # 200 header tricklers
    python3 scripts/slow_clients.py --url http://127.0.0.1:8000 --mode body       # 200 body tricklers
    python3 scripts/slow_clients.py --url http://10.0.0.5:8000 --expect-starved   # gunicorn alone

Opens --connections connections that send a request slowly and never finish it: `headers` sends
the request line and then one header line every --interval seconds; `body` sends complete headers
announcing a body and then one byte of it every --interval seconds. A connection the server closes
is opened again, so the pressure stays at --connections for --duration seconds. Meanwhile a normal
client asks GET /health and POST /predict (a fresh connection each time) every 0.2 s.

Passes (exit 0) when every normal request was answered 200 within --deadline seconds; with
--expect-starved, when at least one was not (to show what the proxy protects against).
Standard library only, so it runs on any host with Python 3.
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

BOSTON_ROW = {"CRIM": 0.1, "ZN": 0.0, "INDUS": 7.0, "CHAS": 0, "NOX": 0.5, "RM": 6.2, "AGE": 60.0,
              "DIS": 4.0, "RAD": 4, "TAX": 300.0, "PTRATIO": 17.0, "LSTAT": 10.0}


class Trickler:
    """Keeps ``n`` slow connections open, reopening any the server closes."""

    def __init__(self, host: str, port: int, n: int, mode: str, interval: float):
        self.host, self.port, self.n, self.mode, self.interval = host, port, n, mode, interval
        self.sockets: list[socket.socket | None] = [None] * n
        self.opened = 0
        self.closed_by_server = 0
        self.open_counts: list[int] = []
        self.stop = threading.Event()

    def _open(self) -> socket.socket | None:
        try:
            sock = socket.create_connection((self.host, self.port), timeout=2)
        except OSError:
            return None
        head = f"POST /predict HTTP/1.1\r\nHost: {self.host}\r\nUser-Agent: slow-client\r\n"
        if self.mode == "body":
            head += "Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n{"
        try:
            sock.sendall(head.encode())
        except OSError:
            sock.close()
            return None
        self.opened += 1
        return sock

    def _drip(self, sock: socket.socket) -> bool:
        try:
            sock.sendall(b"X-Slow: a\r\n" if self.mode == "headers" else b" ")
            return True
        except OSError:
            return False

    def run(self) -> None:
        for index in range(self.n):
            self.sockets[index] = self._open()
        while not self.stop.wait(self.interval):
            for index, sock in enumerate(self.sockets):
                if sock is not None and self._drip(sock):
                    continue
                if sock is not None:
                    sock.close()
                    self.closed_by_server += 1
                self.sockets[index] = self._open()
            self.open_counts.append(sum(sock is not None for sock in self.sockets))

    def close(self) -> None:
        self.stop.set()
        for sock in self.sockets:
            if sock is not None:
                sock.close()


def probe(url: str, timeout: float) -> list[tuple[str, int | None, float]]:
    """GET /health and POST /predict, each on a fresh connection: (what, status, seconds) of each."""
    results = []
    body = json.dumps({"instances": [BOSTON_ROW]}).encode()
    for what, request in (
        ("GET /health", urllib.request.Request(url + "/health")),
        ("POST /predict", urllib.request.Request(url + "/predict", data=body,
                                                 headers={"Content-Type": "application/json"})),
    ):
        started = time.perf_counter()
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                response.read()
                status = response.status
        except urllib.error.HTTPError as error:
            status = error.code
            error.close()
        except OSError:
            status = None
        results.append((what, status, time.perf_counter() - started))
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True, help="the service, e.g. http://127.0.0.1:8000")
    parser.add_argument("--connections", type=int, default=200)
    parser.add_argument("--mode", choices=("headers", "body"), default="headers")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between two drips per connection")
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--deadline", type=float, default=1.0, help="seconds a normal request may take")
    parser.add_argument("--expect-starved", action="store_true",
                        help="pass when the normal client was NOT served in time")
    args = parser.parse_args(argv)

    target = urllib.parse.urlsplit(args.url)
    trickler = Trickler(target.hostname, target.port or 80, args.connections, args.mode, args.interval)
    thread = threading.Thread(target=trickler.run, daemon=True)
    thread.start()
    time.sleep(min(3.0, args.duration / 4))  # let the slow connections pile up first
    answers = []
    ends = time.monotonic() + args.duration
    while time.monotonic() < ends:
        # Twice the deadline as the socket timeout: a late answer is measured, not cut off.
        answers.extend(probe(args.url, timeout=max(2 * args.deadline, 5.0)))
        time.sleep(0.2)
    trickler.close()
    thread.join(timeout=5)

    late = [(what, status, seconds) for what, status, seconds in answers
            if status != 200 or seconds > args.deadline]
    seconds = sorted(answer[2] for answer in answers)
    held = trickler.open_counts or [0]
    print(f"  {args.mode} trickled on {args.connections} connections to {args.url} for {args.duration:.0f} s: "
          f"{min(held)}-{max(held)} open at a time, {trickler.opened} opened, "
          f"{trickler.closed_by_server} closed by the server")
    print(f"  normal requests: {len(answers)}, answered 200 within {args.deadline:.1f} s: {len(answers) - len(late)}, "
          f"median {statistics.median(seconds) * 1000:.1f} ms, max {seconds[-1] * 1000:.1f} ms")
    for what, status, took in late[:5]:
        print(f"    late or failed: {what} -> {status} after {took:.2f} s")
    starved = bool(late)
    if args.expect_starved:
        print("  the normal client was starved, as expected without a proxy" if starved
              else "  the normal client was NOT starved")
        return 0 if starved else 1
    return 1 if starved else 0


if __name__ == "__main__":
    sys.exit(main())

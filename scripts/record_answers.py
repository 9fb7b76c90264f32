"""Load the service and record every answer; later, check each answered request against the log.

    python3 scripts/record_answers.py load --url http://127.0.0.1:8000 --duration 30 --out answers.tsv
    python3 scripts/record_answers.py check answers.tsv logged.txt

`load` sends POST /predict from --workers threads (each request on a fresh connection, with its own
X-Request-ID `<prefix>-<n>`) until --duration seconds have passed or the file named by --stop-file
exists, and writes one line per request: the id it sent, the status (0 when no answer came) and the
X-Request-ID of the answer (the id the service logged the request under).

`check` reads those lines and the log's rows for them (`request_id<TAB>client_request_id` per line,
e.g. from psql -At -F "<TAB>") and passes (exit 0) when every answered request is in the log exactly
once (under the id it was answered with, and no id a client sent in two rows) and no answer was a
5xx other than 502/503/504 (a request in flight on a replica that was killed, or withheld).
Standard library only.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path

BOSTON_ROW = [0.02731, 0.0, 7.07, 0, 0.469, 6.421, 78.9, 4.9671, 2, 242.0, 17.8, 9.14]
ALLOWED_5XX = {502, 503, 504}


def send(url: str, request_id: str, timeout: float) -> tuple[int, str]:
    request = urllib.request.Request(url + "/predict", data=json.dumps({"instances": [BOSTON_ROW]}).encode(),
                                     headers={"Content-Type": "application/json", "X-Request-ID": request_id})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read()
            return response.status, response.headers.get("X-Request-ID", "")
    except urllib.error.HTTPError as error:
        answered_as = error.headers.get("X-Request-ID", "")
        error.close()
        return error.code, answered_as
    except OSError:
        return 0, ""


def load(args: argparse.Namespace) -> int:
    counter = itertools.count()
    lock = threading.Lock()
    lines: list[str] = []
    ends = time.monotonic() + args.duration
    stop_file = Path(args.stop_file) if args.stop_file else None

    def worker() -> None:
        while time.monotonic() < ends and not (stop_file and stop_file.exists()):
            request_id = f"{args.prefix}-{next(counter)}"
            status, answered_as = send(args.url, request_id, args.timeout)
            with lock:
                lines.append(f"{request_id}\t{status}\t{answered_as}\n")
            if status == 0:
                time.sleep(0.05)  # no answer at all: the proxy itself is away; do not spin

    threads = [threading.Thread(target=worker) for _ in range(args.workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    Path(args.out).write_text("".join(lines))
    statuses = Counter(line.split("\t")[1] for line in lines)
    print(f"  sent {len(lines)} requests: " + ", ".join(f"{status}: {n}" for status, n in sorted(statuses.items())))
    return 0


def check(args: argparse.Namespace) -> int:
    answers = [line.split("\t") for line in Path(args.answers).read_text().splitlines() if line]
    rows = [[*line.split("\t"), ""][:2] for line in Path(args.logged).read_text().splitlines() if line.strip()]
    logged = Counter(request_id for request_id, _ in rows)
    # The id the client sent is the row's client_request_id, or its request_id where the service
    # kept the client's id as its own.
    sent_ids = Counter(client_request_id or request_id for request_id, client_request_id in rows)
    answered = [(sent, int(status), answered_as) for sent, status, answered_as in answers
                if int(status) and int(status) not in ALLOWED_5XX]
    bad_5xx = [(sent, status) for sent, status, _ in answered if status >= 500]
    missing = [(sent, answered_as) for sent, _, answered_as in answered if logged[answered_as] == 0]
    doubled = sorted({request_id for counts in (logged, sent_ids) for request_id, n in counts.items() if n > 1})
    unanswered = Counter(int(status) for _, status, _ in answers if not int(status) or int(status) in ALLOWED_5XX)
    print(f"  answered: {len(answered)}, in the log exactly once: {len(answered) - len(missing)}, "
          f"missing: {len(missing)}, logged twice or more: {len(doubled)}, "
          f"other 5xx: {len(bad_5xx)}, no answer or 502/503/504: {dict(unanswered) or 0}")
    for what, items in (("missing", missing), ("doubled", doubled), ("5xx", bad_5xx)):
        for item in items[:5]:
            print(f"    {what}: {item}")
    return 1 if missing or doubled or bad_5xx else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    loading = commands.add_parser("load", help="send requests and record the answers")
    loading.add_argument("--url", required=True)
    loading.add_argument("--duration", type=float, default=30.0)
    loading.add_argument("--workers", type=int, default=4)
    loading.add_argument("--timeout", type=float, default=30.0)
    loading.add_argument("--prefix", default=f"load-{int(time.time())}")
    loading.add_argument("--stop-file", help="stop early once this file exists")
    loading.add_argument("--out", required=True)
    checking = commands.add_parser("check", help="compare the recorded answers with the logged request ids")
    checking.add_argument("answers")
    checking.add_argument("logged")
    args = parser.parse_args(argv)
    return load(args) if args.command == "load" else check(args)


if __name__ == "__main__":
    sys.exit(main())

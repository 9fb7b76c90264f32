"""Send rows of a dataset to the prediction service and summarise what came back.

    .venv/bin/python scripts/make_requests.py                        # every Boston row, one per request
    .venv/bin/python scripts/make_requests.py --batch 50 --workers 4
    .venv/bin/python scripts/make_requests.py --model heart-knn --data ml_models/data/heart.csv --target target

Standard library only. Prints status counts, latency percentiles, requests
and rows per second, and a few predictions next to the true target. Exits
non-zero when any answer was a 5xx or the connection failed.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = ROOT / "ml_models" / "data" / "boston_housing.csv"


def read_rows(path: Path, target: str, drop: set[str], limit: int | None) -> tuple[list[dict], list[float]]:
    with open(path, newline="", encoding="utf-8-sig") as handle:
        records = list(csv.DictReader(handle))[:limit]
    rows = [{key: float(value) for key, value in record.items() if key != target and key not in drop}
            for record in records]
    return rows, [float(record[target]) for record in records]


def post(url: str, rows: list[dict], timeout: float) -> tuple[int | None, float, dict | None]:
    body = json.dumps({"instances": rows}).encode()
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, payload = response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        status, payload = error.code, None
        error.close()
    except OSError:
        status, payload = None, None
    return status, time.perf_counter() - started, payload


def progress(done: int, total: int) -> None:
    width = 30
    filled = width * done // total
    print(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total}", end="", file=sys.stderr, flush=True)
    if done == total:
        print(file=sys.stderr)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base-url", default=os.environ.get("BASE_URL", "http://127.0.0.1:8000"))
    parser.add_argument("--model", help="model name (default: the service's default model, POST /predict)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--target", default="MEDV")
    parser.add_argument("--drop", default="B",
                        help="comma-separated columns the model does not take (default: B, which the Boston model "
                             "leaves out)")
    parser.add_argument("--batch", type=int, default=1, help="rows per request (default 1)")
    parser.add_argument("--workers", type=int, default=1, help="requests in parallel (default 1)")
    parser.add_argument("--limit", type=int, help="use only the first N rows")
    parser.add_argument("--timeout", type=float, default=10.0)
    args = parser.parse_args(argv)

    drop = {name for name in args.drop.split(",") if name}  # names not in the file are ignored
    rows, truth = read_rows(args.data, args.target, drop, args.limit)
    url = f"{args.base_url}/models/{args.model}/predict" if args.model else f"{args.base_url}/predict"
    batches = [(start, rows[start:start + args.batch]) for start in range(0, len(rows), args.batch)]
    statuses: Counter = Counter()
    latencies: list[float] = []
    examples: list[tuple[float, object]] = []
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=args.workers) as pool:
        futures = {pool.submit(post, url, batch, args.timeout): start for start, batch in batches}
        for done, future in enumerate(as_completed(futures), start=1):
            status, seconds, payload = future.result()
            statuses[status or "connection failed"] += 1
            latencies.append(seconds)
            if payload and len(examples) < 5:
                start = futures[future]
                examples.append((truth[start], payload["predictions"][0]))
            progress(done, len(batches))
    elapsed = time.perf_counter() - started

    print(f"url           {url}")
    print(f"requests      {len(batches)} ({args.batch} rows each, {args.workers} in parallel) in {elapsed:.2f} s")
    print(f"status        {', '.join(f'{key}: {value}' for key, value in sorted(statuses.items(), key=str))}")
    print(f"latency ms    p50 {percentile(latencies, 50) * 1000:.1f}  p95 {percentile(latencies, 95) * 1000:.1f}  "
          f"p99 {percentile(latencies, 99) * 1000:.1f}  mean {statistics.mean(latencies) * 1000:.1f}")
    print(f"throughput    {len(batches) / elapsed:.1f} requests/s, {len(rows) / elapsed:.1f} rows/s")
    for true_value, predicted in examples:
        shown = f"{predicted:.2f}" if isinstance(predicted, float) else str(predicted)
        print(f"example       {args.target} {true_value:g} -> predicted {shown}")
    failed = sum(count for key, count in statuses.items() if not isinstance(key, int) or key >= 500)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

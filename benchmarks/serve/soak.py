"""Soak test of `distil serve`: N clients for T seconds with `hey`, a version swap in the middle.

    PYTHONPATH=src python benchmarks/serve/soak.py RUN --stage STAGED_VERSION_DIR \
        [--clients 8] [--seconds 20] [--binary] [--max-delay-ms 2] [--out results.json]

The server (`python -m distil serve RUN`, DISTIL_THREADS=1, its own process) serves the run's
student; every client sends one Fashion-MNIST test image as an Open Inference Protocol request (JSON,
or with --binary the binary tensor extension) to /v2/models/student/infer, no version named. At T/2
the staged version folder (what `distil loop` promoted elsewhere) is copied in beside RUN/versions
and renamed to RUN/versions/N in one step, so the server's watcher swaps to it under load. Reported:
requests/s, latency p50/p90/p99/max from hey's per-request CSV, every non-200 answer (the goal: none),
the server process's CPU time per request (user + system, all threads: robust to a shared CPU),
when the swap was seen, which versions answered, and the server's resident memory (sampled every 0.5 s)
at the start, the end and its peak. The swapped-in folder is removed afterwards: RUN is left as it was.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of the process (all its threads) so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def request_body(binary: bool) -> tuple[bytes, dict[str, str]]:
    """One Fashion-MNIST test image, normalized, as an OIP infer request."""
    sys.path.insert(0, str(ROOT / "src"))
    from distil.data import load_dataset

    x = load_dataset("fashion_mnist", val_size=5000, seed=0).test.x[:1].numpy().astype(np.float32)
    tensor = {"name": "input", "shape": list(x.shape), "datatype": "FP32"}
    if not binary:
        return json.dumps({"inputs": [{**tensor, "data": x.ravel().tolist()}]}).encode(), {"content-type": "application/json"}
    header = json.dumps({"inputs": [{**tensor, "parameters": {"binary_data_size": x.nbytes}}],
                         "outputs": [{"name": "logits", "parameters": {"binary_data": True}}]}).encode()  # fmt: skip
    return header + x.tobytes(), {"content-type": "application/octet-stream", "Inference-Header-Content-Length": str(len(header))}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("run", type=Path)
    parser.add_argument("--stage", type=Path, required=True, help="a versions/N folder made by `distil loop` on a copy of RUN")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--binary", action="store_true")
    parser.add_argument("--max-delay-ms", type=float, default=0.0)
    parser.add_argument("--max-batch", type=int, default=32)
    parser.add_argument("--no-swap", action="store_true")
    parser.add_argument("--inline-ms", type=float, default=0.0)
    parser.add_argument("--fast-http", action="store_true", help="put uvloop + httptools (pip install --target DIR) on the server's path: $FAST_HTTP_PATH")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    versions = args.run / "versions"
    number = max([1, *(int(p.name) for p in versions.iterdir() if p.name.isdigit())] if versions.is_dir() else [1]) + 1
    body, headers = request_body(args.binary)
    body_file = Path(os.environ.get("TMPDIR", "/tmp")) / f"soak-body-{os.getpid()}.bin"
    body_file.write_bytes(body)
    port = free_port()
    path = [str(ROOT / "src")] + ([os.environ["FAST_HTTP_PATH"]] if args.fast_http else [])
    env = {**os.environ, "DISTIL_THREADS": "1", "PYTHONPATH": os.pathsep.join(path)}
    server = subprocess.Popen(
        [sys.executable, "-m", "distil", "serve", str(args.run), "--port", str(port), "--max-delay-ms", str(args.max_delay_ms), "--max-batch", str(args.max_batch), "--inline-ms", str(args.inline_ms)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    swapped_in = versions / str(number)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(url + "/v2/health/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                raise SystemExit(f"the server did not start: {server.stderr.read().decode() if server.poll() is not None else 'timeout'}")
            time.sleep(0.2)
        before = httpx.get(url + "/v2/models/student").json()
        memory: list[tuple[float, float]] = []
        events: dict[str, float] = {}
        stop = threading.Event()
        start = time.monotonic()

        def sample() -> None:
            while not stop.is_set():
                memory.append((round(time.monotonic() - start, 2), rss_mb(server.pid)))
                time.sleep(0.5)

        def swap() -> None:
            time.sleep(args.seconds / 2)
            staging = versions / f".staging-{number}"
            shutil.copytree(args.stage, staging)
            events["promoted_s"] = time.monotonic() - start
            staging.rename(swapped_in)  # one step: the watcher never sees a half-copied version
            with httpx.Client(timeout=5) as client:
                while not stop.is_set():
                    if str(number) in client.get(url + "/v2/models/student").json()["versions"]:
                        events["served_s"] = time.monotonic() - start
                        return
                    time.sleep(0.05)

        threads = [threading.Thread(target=sample, daemon=True)] + ([] if args.no_swap else [threading.Thread(target=swap, daemon=True)])
        for t in threads:
            t.start()
        hey = ["hey", "-z", f"{args.seconds}s", "-c", str(args.clients), "-m", "POST", "-D", str(body_file), "-o", "csv"]
        for k, v in headers.items():
            hey += ["-T", v] if k == "content-type" else ["-H", f"{k}: {v}"]
        cpu_before = cpu_seconds(server.pid)
        done = subprocess.run([*hey, url + "/v2/models/student/infer"], capture_output=True, text=True, check=True)
        cpu_used = cpu_seconds(server.pid) - cpu_before
        stop.set()
        for t in threads:
            t.join(5)
        after = httpx.get(url + "/v2/models/student").json()
        metrics = httpx.get(url + "/metrics").text
    finally:
        server.terminate()
        server.wait(20)
        body_file.unlink(missing_ok=True)
        shutil.rmtree(swapped_in, ignore_errors=True)

    rows = list(csv.DictReader(io.StringIO(done.stdout)))
    seconds = np.array([float(r["response-time"]) for r in rows])
    codes: dict[str, int] = {}
    for r in rows:
        codes[r["status-code"]] = codes.get(r["status-code"], 0) + 1
    wall = max(float(r["offset"]) + float(r["response-time"]) for r in rows)
    per_version = {}
    for line in metrics.splitlines():
        if line.startswith("distil_inference_samples_total{"):
            labels, value = line.rsplit(" ", 1)
            if 'model="student"' in labels:
                per_version[labels.split('version="')[1].split('"')[0]] = float(value)
    rss = [m for _, m in memory]
    result = {
        "clients": args.clients,
        "seconds": args.seconds,
        "protocol": "binary" if args.binary else "json",
        "max_delay_ms": args.max_delay_ms,
        "inline_ms": args.inline_ms,
        "fast_http": args.fast_http,
        "requests": len(rows),
        "requests_per_s": round(len(rows) / wall, 1),
        "status_codes": codes,
        "failed": len(rows) - codes.get("200", 0),
        # the server's own CPU time per request: what a variant costs, much less sensitive to other jobs than requests/s
        "server_cpu_ms_per_request": round(1000 * cpu_used / len(rows), 3),
        "latency_ms": {q: round(1000 * float(np.percentile(seconds, p)), 2) for q, p in (("p50", 50), ("p90", 90), ("p99", 99))}
        | {"max": round(1000 * float(seconds.max()), 2)},
        "swap": None if args.no_swap else {"version": str(number), **{k: round(v, 2) for k, v in events.items()}},
        "versions_before": before["versions"],
        "versions_after": after["versions"],
        "samples_per_version": per_version,
        "served_row_before": before["parameters"].get("row"),
        "served_row_after": after["parameters"].get("row"),
        "rss_mb": {"start": round(rss[0], 1), "end": round(rss[-1], 1), "max": round(max(rss), 1)} if rss else None,
        "load_average_1m_after": os.getloadavg()[0],
    }
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()

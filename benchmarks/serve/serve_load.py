"""Load benchmark for `distil serve`: N concurrent clients for T seconds, mixed JSON and binary OIP requests.

    python benchmarks/serve/serve_load.py --serve runs/demo --clients 16 --seconds 30
    python benchmarks/serve/serve_load.py --url http://127.0.0.1:8080 --clients 16 --seconds 30

With ``--serve`` the script starts ``distil serve RUN_DIR`` on a free 127.0.0.1 port, waits until it
is ready, runs the load and stops the server; with ``--url`` it loads a server already running.
Every response is checked (status 200, output shape); anything else counts as an error. Requests
alternate between JSON tensors and the binary tensor extension. Prints a Markdown table and JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time

import httpx
import numpy as np


def payloads(shape: list[int], batch: int, seed: int = 0) -> dict[str, tuple[bytes, dict[str, str]]]:
    x = np.random.default_rng(seed).standard_normal((batch, *shape)).astype(np.float32)
    tensor = {"name": "input", "shape": [batch, *shape], "datatype": "FP32"}
    as_json = json.dumps({"inputs": [{**tensor, "data": x.ravel().tolist()}]}).encode()
    header = json.dumps(
        {
            "inputs": [{**tensor, "parameters": {"binary_data_size": x.nbytes}}],
            "outputs": [{"name": "logits", "parameters": {"binary_data": True}}],
        }
    ).encode()
    return {
        "json": (as_json, {"content-type": "application/json"}),
        "binary": (header + x.tobytes(), {"content-type": "application/octet-stream", "Inference-Header-Content-Length": str(len(header))}),
    }


async def client(http: httpx.AsyncClient, path: str, bodies: dict, first: int, deadline: float, max_requests: int, records: list) -> None:
    kinds = list(bodies)
    i = first
    while time.perf_counter() < deadline and len(records) < max_requests:
        kind = kinds[i % len(kinds)]
        content, headers = bodies[kind]
        start = time.perf_counter()
        try:
            r = await http.post(path, content=content, headers=headers)
            ok = r.status_code == 200 and _well_formed(r, kind)
            status = r.status_code
        except httpx.HTTPError as err:
            ok, status = False, type(err).__name__
        records.append((kind, time.perf_counter() - start, ok, status))
        i += 1


def _well_formed(r: httpx.Response, kind: str) -> bool:
    if kind == "binary":
        length = int(r.headers.get("inference-header-content-length", 0))
        meta = json.loads(r.content[:length])
        return len(r.content) == length + meta["outputs"][0]["parameters"]["binary_data_size"]
    return len(r.json()["outputs"]) == 2


async def load(url: str, model: str, clients: int, seconds: float, batch: int, max_requests: int) -> dict:
    async with httpx.AsyncClient(
        base_url=url, timeout=30, limits=httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    ) as http:
        meta = (await http.get(f"/v2/models/{model}")).json()
        bodies = payloads(meta["inputs"][0]["shape"][1:], batch)
        path = f"/v2/models/{model}/infer"
        for kind in bodies:  # warm-up, not counted
            await http.post(path, content=bodies[kind][0], headers=bodies[kind][1])
        records: list = []
        start = time.perf_counter()
        await asyncio.gather(*(client(http, path, bodies, c, start + seconds, max_requests, records) for c in range(clients)))
        wall = time.perf_counter() - start
        server_metrics = (await http.get("/metrics")).text
    return summarize(records, wall, meta, clients, batch, server_metrics)


def summarize(records: list, wall: float, meta: dict, clients: int, batch: int, server_metrics: str) -> dict:
    def stats(rows: list) -> dict:
        ms = np.array([r[1] for r in rows]) * 1000 if rows else np.array([np.nan])
        return {
            "requests": len(rows),
            "p50_ms": round(float(np.percentile(ms, 50)), 2),
            "p99_ms": round(float(np.percentile(ms, 99)), 2),
            "errors": sum(not r[2] for r in rows),
        }

    batch_stats = {
        line.split("{")[0]: float(line.split()[-1])
        for line in server_metrics.splitlines()
        if line.startswith(("distil_batch_size_sum", "distil_batch_size_count")) and f'"{meta["name"]}"' in line
    }
    out = {
        "model": meta["name"],
        "platform": meta["platform"],
        "clients": clients,
        "batch_per_request": batch,
        "seconds": round(wall, 2),
        "throughput_rps": round(len(records) / wall, 1),
        "samples_per_s": round(len(records) * batch / wall, 1),
        **stats(records),
        "by_kind": {kind: stats([r for r in records if r[0] == kind]) for kind in ("json", "binary")},
        "error_statuses": sorted({str(r[3]) for r in records if not r[2]}),
    }
    if batch_stats.get("distil_batch_size_count"):
        out["server_mean_batch"] = round(batch_stats["distil_batch_size_sum"] / batch_stats["distil_batch_size_count"], 2)
    return out


def start_server(run_dir: str, args: list[str]) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = [sys.executable, "-m", "distil", "serve", run_dir, "--host", "127.0.0.1", "--port", str(port), *args]
    proc = subprocess.Popen(command, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"distil serve exited with {proc.returncode}")
        try:
            if httpx.get(url + "/v2/health/ready", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    stop_server(proc)
    raise SystemExit("distil serve did not become ready in 300 s")


def stop_server(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--url", help="a running server, e.g. http://127.0.0.1:8080")
    where.add_argument("--serve", metavar="RUN_DIR", help="start `distil serve RUN_DIR` on 127.0.0.1 for the duration")
    parser.add_argument("--serve-args", default="", help="extra arguments for distil serve, e.g. '--runtime torch'")
    parser.add_argument("--model", default="student")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--batch", type=int, default=1, help="samples per request")
    parser.add_argument("--max-requests", type=int, default=1_000_000, help="stop after this many requests in all")
    args = parser.parse_args()
    proc = None
    url = args.url
    if args.serve:
        proc, url = start_server(args.serve, args.serve_args.split())
    try:
        result = asyncio.run(load(url, args.model, args.clients, args.seconds, args.batch, args.max_requests))
    finally:
        if proc is not None:
            stop_server(proc)
    print("| clients | s | requests | req/s | p50 ms | p99 ms | errors | JSON p50/p99 ms | binary p50/p99 ms |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    j, b = result["by_kind"]["json"], result["by_kind"]["binary"]
    print(
        f"| {result['clients']} | {result['seconds']} | {result['requests']} | {result['throughput_rps']} | {result['p50_ms']} | {result['p99_ms']} | {result['errors']} | {j['p50_ms']} / {j['p99_ms']} | {b['p50_ms']} / {b['p99_ms']} |"
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()

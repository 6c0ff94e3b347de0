import json
import sys
from pathlib import Path

d = Path(sys.argv[1])
print("| variant | requests/s | server CPU ms/request | p50 ms | p90 ms | p99 ms | max ms | failed | swap seen after | RSS MB start → end (max) | load 1 min |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
for name in sys.argv[2:]:
    f = d / f"{name}.json"
    if not f.exists(): continue
    r = json.loads(f.read_text())
    s = r["swap"]; m = r["rss_mb"]; l = r["latency_ms"]
    print(f"| {name} | {r['requests_per_s']:,.0f} | {r.get('server_cpu_ms_per_request', '')} | {l['p50']} | {l['p90']} | {l['p99']} | {l['max']} | {r['failed']} of {r['requests']:,} | {s['served_s']-s['promoted_s']:.2f} s | {m['start']} → {m['end']} ({m['max']}) | {r['load_average_1m_after']:.1f} |")

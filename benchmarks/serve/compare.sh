#!/usr/bin/env bash
# One run of every server variant, back to back (same machine state), 8 clients × 20 s, a version swap in each.
# usage: FAST_HTTP_PATH=DIR benchmarks/serve/compare.sh RUN STAGED_VERSION OUT_DIR [VARIANT ...]
#   DIR: pip install --target DIR uvloop httptools (uvicorn picks them up when importable)
set -euo pipefail
run=$1; stage=$2; out=$3; shift 3
mkdir -p "$out"
py=${PYTHON:-python}
# delay2: the old default (a batch's first request waits 2 ms for company); the others wait 0 ms (the default now)
declare -A variants=(
  [json-delay2]="--max-delay-ms 2"
  [json]=""
  [json-inline]="--inline-ms 1"
  [json-fasthttp]="--fast-http"
  [binary]="--binary"
  [binary-fasthttp]="--fast-http --binary"
  [binary-fasthttp-inline]="--fast-http --binary --inline-ms 1"
)
names=("$@")
[ ${#names[@]} -gt 0 ] || names=(json-delay2 json json-inline json-fasthttp binary binary-fasthttp binary-fasthttp-inline)
for name in "${names[@]}"; do
  # shellcheck disable=SC2086
  PYTHONPATH=src DISTIL_THREADS=1 "$py" benchmarks/serve/soak.py "$run" --stage "$stage" --seconds 20 --clients 8 --out "$out/$name.json" ${variants[$name]} > /dev/null
  echo "$name done"
done

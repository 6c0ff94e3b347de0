#!/usr/bin/env bash
# One run of every server variant, back to back (same machine state), 8 clients × 20 s, a version swap in each.
# usage: FAST_HTTP_PATH=DIR benchmarks/serve/compare.sh RUN STAGED_VERSION OUT_DIR [VARIANT ...]
#   DIR: pip install --target DIR uvloop httptools (uvicorn picks them up when importable)
set -euo pipefail
run=$1; stage=$2; out=$3; shift 3
mkdir -p "$out"
py=${PYTHON:-python}
declare -A variants=(
  [json]=""
  [json-inline]="--inline-ms 1"
  [json-fasthttp]="--fast-http"
  [json-fasthttp-inline]="--fast-http --inline-ms 1"
  [binary-fasthttp-inline]="--fast-http --inline-ms 1 --binary"
  [json-delay0]="--max-delay-ms 0"
  [binary-delay0]="--binary --max-delay-ms 0"
  [json-fasthttp-delay0]="--fast-http --max-delay-ms 0"
  [binary-fasthttp-delay0]="--fast-http --binary --max-delay-ms 0"
  [binary-fasthttp-inline-delay0]="--fast-http --inline-ms 1 --binary --max-delay-ms 0"
)
names=("$@")
[ ${#names[@]} -gt 0 ] || names=(json json-inline json-fasthttp json-fasthttp-inline binary-fasthttp-inline binary-fasthttp-inline-delay0)
for name in "${names[@]}"; do
  # shellcheck disable=SC2086
  PYTHONPATH=src DISTIL_THREADS=1 "$py" benchmarks/serve/soak.py "$run" --stage "$stage" --seconds 20 --clients 8 --out "$out/$name.json" ${variants[$name]} > /dev/null
  echo "$name done"
done

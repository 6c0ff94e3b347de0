"""Does `distil serve RUN_DIR` answer a standard OIP client with the model's own predictions?

    python benchmarks/serve/serve_agreement.py runs/demo --samples 1000

Starts `distil serve RUN_DIR` on a free 127.0.0.1 port (as serve_load.py does), sends the first
``--samples`` test images of the run's dataset through ``tritonclient.http`` (JSON tensors and
binary tensors, batches of 100), and compares with the student rebuilt locally in PyTorch from
``config.yaml`` and its safetensors weights: top-1 agreement, max |Δ logit|, test accuracy of both.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
import yaml
from serve_load import start_server, stop_server

from distil.config import validate_config
from distil.models import build_model
from distil.weights import load_weights


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--serve-args", default="")
    args = parser.parse_args()
    import tritonclient.http as triton

    summary = json.loads((args.run_dir / "summary.json").read_text())
    config = validate_config(yaml.safe_load((args.run_dir / "config.yaml").read_text()))
    row = next(m for m in reversed(summary["models"]) if m["role"] == "student" and m["method"] != "scratch")
    data = config.data.load(config.seed)
    model = build_model(config.student.arch, input_shape=data.input_shape, num_classes=data.num_classes, **config.student.kwargs)
    load_weights(model, args.run_dir / row["weights"]).eval()
    x = data.test.x[: args.samples].numpy()
    y = data.test.y[: args.samples].numpy()
    with torch.inference_mode():
        local = model(torch.from_numpy(x)).numpy()

    proc, url = start_server(str(args.run_dir), args.serve_args.split())
    try:
        client = triton.InferenceServerClient(url.removeprefix("http://"), connection_timeout=60, network_timeout=60)
        platform = client.get_model_metadata("student")["platform"]
        served = {}
        for binary in (False, True):
            parts = []
            for start in range(0, len(x), 100):
                chunk = x[start : start + 100]
                tensor = triton.InferInput("input", list(chunk.shape), "FP32")
                tensor.set_data_from_numpy(chunk, binary_data=binary)
                result = client.infer("student", [tensor], outputs=[triton.InferRequestedOutput("logits", binary_data=binary)])
                parts.append(result.as_numpy("logits"))
            served["binary" if binary else "json"] = np.concatenate(parts)
        client.close()
    finally:
        stop_server(proc)
    report = {
        "run": str(args.run_dir),
        "model": row["name"],
        "platform": platform,
        "samples": len(x),
        "local_accuracy": float((local.argmax(1) == y).mean()),
    }
    for kind, logits in served.items():
        report[kind] = {
            "top1_agreement": float((logits.argmax(1) == local.argmax(1)).mean()),
            "max_abs_logit_diff": float(np.abs(logits - local).max()),
            "accuracy": float((logits.argmax(1) == y).mean()),
        }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()

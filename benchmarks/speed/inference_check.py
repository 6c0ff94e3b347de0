"""Teacher inference on 2,048 Fashion-MNIST images, 1 thread: eager (inference_mode / no_grad, batch 256 / 1024) vs torch.compile.

Run from the repository root: PYTHONPATH=src python benchmarks/speed/inference_check.py (numbers in benchmarks/speed/README.md)."""
import statistics
import time

import torch

torch.set_num_threads(1)
from distil.config import load_config
from distil.data import load_dataset
from distil.weights import load_weights

cfg = load_config("configs/fashion_mnist/demo.yaml")
data = load_dataset("fashion_mnist", val_size=5000, seed=0)
t = cfg.teacher.build(data, 0); load_weights(t, cfg.teacher.weights); t.eval().requires_grad_(False)
x = data.train.x[:2048].contiguous(memory_format=torch.channels_last)
def run(m, bs=256, mode=torch.inference_mode):
    st=time.perf_counter()
    with mode():
        for i in range(0, len(x), bs): m(x[i:i+bs])
    return time.perf_counter()-st
tcl = t.to(memory_format=torch.channels_last)
st=time.perf_counter(); c = torch.compile(tcl)
with torch.inference_mode(): c(x[:256])
print("compile_seconds", round(time.perf_counter()-st,2), flush=True)
res={}
for rep in range(3):
    res.setdefault("eager cl b256 inference_mode",[]).append(run(tcl))
    res.setdefault("eager cl b256 no_grad",[]).append(run(tcl, mode=torch.no_grad))
    res.setdefault("compiled cl b256 inference_mode",[]).append(run(c))
    res.setdefault("eager cl b1024 inference_mode",[]).append(run(tcl, 1024))
for k,v in res.items(): print(k, "median", round(statistics.median(v),3), [round(a,3) for a in v], flush=True)

#!/usr/bin/env python3
"""Notebook-style tour of attnsparse from Python on the bundled model.

    PYTHONPATH=build/python python3 examples/analyze_bundled.py [--out DIR]

Loads models/kjv-llama.gguf, generates a little text, looks at the attention of a
sentence, compares the attention mass two policies keep (a sink + window and the
oracle top-k, both 32 keys per query), analyses the attention of the LongBench sample
records (../shared/reference/longbench/sample.jsonl, or a text of its own when that is
absent), prints the verdicts and the width per layer, and plots the width per layer
with matplotlib when it is installed (skipped otherwise).
"""
import argparse
import os
import sys

import numpy as np

import attnsparse

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

ap = argparse.ArgumentParser()
ap.add_argument("--out", default=os.path.join(ROOT, "out", "python-example"))
ap.add_argument("--model", default=os.path.join(ROOT, "models", "kjv-llama.gguf"))
args = ap.parse_args()

# %% The model
model = attnsparse.Model(args.model)
info = model.info
print("model: %s, %d layers x %d heads, vocabulary %d, context %d" % (
    info["arch"], info["n_layer"], info["n_head"], info["n_vocab"], info["n_ctx"]))
print("continuation:", repr(model.generate("And God said", n=24, temp=0)))

# %% Attention of one sentence: how much of the mass sits on key 0 and on the last 8 keys
ids = model.tokenize("In the beginning God created the heaven and the earth. And the earth was without form.")
attn = model.attention(ids)  # float32 [layers, heads, n, n]
n = attn.shape[-1]
sink = attn[:, :, 16:, 0].mean(axis=(1, 2))
recent = np.array([[sum(attn[l, :, t, max(0, t - 7): t + 1].sum(axis=-1).mean() for t in range(16, n)) / (n - 16)]
                   for l in range(attn.shape[0])]).ravel()
for layer in range(attn.shape[0]):
    print("layer %d: sink mass %.3f, last-8 mass %.3f" % (layer, sink[layer], recent[layer]))

# %% Two policies on the same rows: the attention mass each keeps (32 keys per query)
window = attnsparse.Policy("sink=4,window=28")
topk = attnsparse.Policy("topk=32")
ids = model.tokenize(("And God said, Let there be light: and there was light. And God saw the light, "
                      "that it was good: and God divided the light from the darkness. ") * 3)
attn = model.attention(ids)
n = attn.shape[-1]
mask = window.mask(n)
for layer in range(attn.shape[0]):
    w = np.mean([(attn[layer, h, t] * mask[t]).sum() for h in range(attn.shape[1]) for t in range(64, n)])
    k = np.mean([attn[layer, h, t, topk.select(attn[layer, h, t, : t + 1])].sum()
                 for h in range(attn.shape[1]) for t in range(64, n)])
    print("layer %d: mass kept by %s %.3f, by %s %.3f" % (layer, window.spec, w, topk.spec, k))

# %% The analysis: streamed statistics and the five verdicts
data = os.path.join(ROOT, "..", "shared", "reference", "longbench", "sample.jsonl")
if not os.path.exists(data):
    os.makedirs(args.out, exist_ok=True)
    data = os.path.join(args.out, "text.txt")
    with open(data, "w") as f:
        f.write("And God said, Let there be light: and there was light. " * 60)
report = attnsparse.analyze(model, data, max_tokens=256, bootstrap_resamples=200)
print(report.table())
layers = report.layers
width = np.asarray(layers["width_norm_p90"], dtype=float)
low = np.asarray(layers["width_norm_p90_low"], dtype=float)
high = np.asarray(layers["width_norm_p90_high"], dtype=float)
for layer, (w, lo, hi) in enumerate(zip(width, low, high)):
    print("layer %d: w_0.9 = %.3f [%.3f, %.3f]" % (layer, w, lo, hi))
paths = report.save(args.out)
print("saved:", *paths)

# %% Width per layer (matplotlib is optional)
try:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
except ImportError:
    print("plot skipped: matplotlib is not installed")
    sys.exit(0)
fig, ax = plt.subplots(figsize=(5.5, 3.2))
x = np.arange(len(width))
ax.errorbar(x, width, yerr=[width - low, high - width], marker="o", capsize=3)
ax.set_xlabel("layer")
ax.set_ylabel("w_0.9 (share of keys, 90% mass)")
ax.set_xticks(x)
fig.tight_layout()
png = os.path.join(args.out, "width_per_layer.png")
fig.savefig(png, dpi=100)
print("plot:", png)

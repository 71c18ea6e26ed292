#!/usr/bin/env python3
"""Attention rows from a PyTorch model fed to attnsparse.RowStats.

    PYTHONPATH=build/python python3 examples/torch_rowstats.py

A tiny causal self-attention stack with random weights (torch, optional: exits with
status 77, "skipped", when Debian's python3-torch is not installed) runs on random
token ids; the attention weights of every layer go to RowStats, which computes the
statistics and verdicts of `attnsparse analyze` without storing the rows.
"""
import sys

try:
    import torch
except ImportError:
    print("skipped: PyTorch (python3-torch) is not installed")
    sys.exit(77)

import attnsparse

torch.manual_seed(0)
n_layers, n_heads, d_model, vocab = 3, 4, 64, 500
head_dim = d_model // n_heads


class Block(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.qkv = torch.nn.Linear(d_model, 3 * d_model)
        self.out = torch.nn.Linear(d_model, d_model)
        self.norm = torch.nn.LayerNorm(d_model)

    def forward(self, x):
        n = x.shape[0]
        q, k, v = self.qkv(self.norm(x)).view(n, 3, n_heads, head_dim).unbind(1)
        scores = torch.einsum("qhd,khd->hqk", q, k) / head_dim ** 0.5 * 4.0  # peaky on purpose
        mask = torch.triu(torch.ones(n, n, dtype=torch.bool), 1)
        probs = scores.masked_fill(mask, float("-inf")).softmax(-1)  # [heads, n, n]
        y = torch.einsum("hqk,khd->qhd", probs, v).reshape(n, d_model)
        return x + self.out(y), probs


embed = torch.nn.Embedding(vocab, d_model)
blocks = [Block() for _ in range(n_layers)]
stats = attnsparse.RowStats(n_layers, n_heads, min_query=16, bootstrap_resamples=200)
with torch.no_grad():
    for doc in range(6):
        n = 200 + 32 * doc  # > 64 + 128 tokens: persistence pairs at gap 128 (C5)
        x = embed(torch.randint(0, vocab, (n,)))
        stats.begin_document(n, id="doc%d" % doc, dataset="random")
        for layer, block in enumerate(blocks):
            x, probs = block(x)
            stats.add_attention(layer, probs)  # CPU tensors work through __array__
        stats.end_document()

report = stats.report(meta={"model": {"name": "tiny torch model", "arch": "torch"}})
print(stats)
print(report.table())
for v in report.verdicts:
    print("C%d %s: %s" % (v["id"], v["verdict"], v["detail"]))

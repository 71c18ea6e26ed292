#!/usr/bin/env python3
"""Writes the seed inputs of fuzz_llama2c (fuzz/seeds/llama2c/): tiny llama2.c checkpoints
(legacy export layout, io/llama2c.h) with small random weights, and a checkpoint paired
with a 32-token tokenizer file. The first byte of each seed is the target's mode.
Usage: python3 fuzz/make_llama2c_seeds.py fuzz/seeds/llama2c"""
import random
import struct
import sys
from pathlib import Path


def checkpoint(dim, hidden, layers, heads, kv_heads, vocab, seq, shared, rng):
    head = dim // heads
    kv = kv_heads * head
    counts = [vocab * dim, layers * dim, layers * dim * dim, layers * kv * dim, layers * kv * dim,
              layers * dim * dim, layers * dim, layers * hidden * dim, layers * dim * hidden,
              layers * hidden * dim, dim, 2 * seq * (head // 2)]
    if not shared:
        counts.append(vocab * dim)
    header = struct.pack("<7i", dim, hidden, layers, heads, kv_heads, vocab if shared else -vocab, seq)
    floats = []
    for i, n in enumerate(counts):
        norm = i in (1, 6, 10)  # RMS norm weights near 1
        floats += [1.0 + rng.gauss(0, 0.05) if norm else rng.gauss(0, 0.2) for _ in range(n)]
    return header + struct.pack(f"<{len(floats)}f", *floats)


def tokenizer(pieces):
    out = struct.pack("<i", max(len(p) for p in pieces))
    for i, p in enumerate(pieces):
        out += struct.pack("<fi", -float(i), len(p)) + p
    return out


def main():
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(7)
    a = checkpoint(8, 16, 2, 2, 1, 32, 16, True, rng)
    b = checkpoint(16, 24, 1, 4, 4, 20, 8, False, rng)
    pieces = [b"<unk>", b"\n<s>\n", b"\n</s>\n", b" "] + [bytes([c]) for c in b"abcdefghijklmnopqrstuvwxyz"] + [b" a", b"th"]
    tok = tokenizer(pieces)
    assert len(pieces) == 32
    (out / "checkpoint-gqa.seed").write_bytes(b"\x00" + a)
    (out / "checkpoint-untied.seed").write_bytes(b"\x00" + b)
    (out / "tokenizer-32.seed").write_bytes(b"\x01" + tok)
    (out / "pair.seed").write_bytes(b"\x02" + struct.pack("<I", len(tok)) + tok + a)


if __name__ == "__main__":
    main()

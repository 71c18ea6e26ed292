"""attnsparse.Model against llama.cpp's reference outputs and against the command line."""
import json
import os
import signal
import threading
import time

import numpy as np
import pytest

import attnsparse
from conftest import BUNDLED_MODEL, cli, cli_json, reference

CASE = "llama-spm-f32.text"


def manifest_case(name):
    with open(reference("expected", "manifest.json")) as f:
        for c in json.load(f)["cases"]:
            if c["case"] == name:
                return c
    raise AssertionError(name + " not in manifest.json")


def ref_tokens(name):
    with open(reference("expected", name + ".tokens.txt")) as f:
        return [int(x) for x in f.read().split()]


def test_import_names_the_api():
    for name in ("Model", "Policy", "Report", "RowStats", "analyze", "theory", "Error", "UsageError",
                 "FormatError"):
        assert hasattr(attnsparse, name), name
    assert issubclass(attnsparse.UsageError, attnsparse.Error)
    assert issubclass(attnsparse.UsageError, ValueError)
    assert issubclass(attnsparse.FormatError, attnsparse.Error)


def test_logits_match_llama_cpp(ref_model):
    # The tolerances of tests/model/test_reference.cpp for this case: max over rows of
    # max|d logit| / std(row) <= 1e-4 and its mean <= 3e-5 (1.6e-5 / 5e-6 measured there).
    spec = manifest_case(CASE)
    rows = spec["logit_rows"]
    got = ref_model.logits(ref_tokens(CASE), rows=rows)
    assert got.dtype == np.float32 and got.shape == tuple(spec["logits_shape"])
    want = np.fromfile(reference("expected", spec["logits_file"]), dtype="<f4").reshape(got.shape)
    rel = np.abs(got.astype(np.float64) - want).max(axis=1) / want.astype(np.float64).std(axis=1)
    assert rel.max() <= 1e-4, rel.max()
    assert rel.mean() <= 3e-5, rel.mean()
    # All rows at once (another shape of the output matmul): within the same tolerance.
    every = ref_model.logits(ref_tokens(CASE))
    assert every.shape == (spec["n_tokens"], spec["n_vocab"])
    rel = np.abs(every[rows].astype(np.float64) - want).max(axis=1) / want.astype(np.float64).std(axis=1)
    assert rel.max() <= 1e-4, rel.max()


def test_attention_matches_llama_cpp(ref_model):
    # max |d p| <= 3e-5 as tests/model/test_reference.cpp (5.5e-6 measured there).
    spec = manifest_case(CASE)
    got = ref_model.attention(ref_tokens(CASE))
    assert got.dtype == np.float32 and got.shape == tuple(spec["attn_shape"])
    want = np.fromfile(reference("expected", spec["attn_file"]), dtype="<f4").reshape(got.shape)
    assert np.abs(got - want).max() <= 3e-5
    n = got.shape[-1]
    assert np.all(got[..., np.triu_indices(n, 1)[0], np.triu_indices(n, 1)[1]] == 0)
    # A selection of layers and heads is the same slice of the full array, in the given order.
    part = ref_model.attention(ref_tokens(CASE), layers=[1], heads=[3, 0])
    np.testing.assert_array_equal(part, got[[1]][:, [3, 0]])


def test_tokenize_matches_llama_cpp(ref_model):
    with open(reference("expected", "text_a.txt"), "rb") as f:
        text = f.read()
    assert ref_model.tokenize(text.decode("utf-8")) == ref_tokens(CASE)
    assert ref_model.tokenize(text) == ref_tokens(CASE)  # bytes as well
    assert ref_model.tokenize("Hello", special=False)[0] != ref_model.tokenize("Hello")[0]  # BOS


def test_detokenize_round_trip_and_cli_tokenize(bundled):
    text = "And God said, Let there be light: and there was light."
    ids = bundled.tokenize(text)
    assert ids == [int(x) for x in cli("tokenize", BUNDLED_MODEL, "--text", text).stdout.split()]
    assert bundled.detokenize(ids) == text
    assert bundled.detokenize(np.array(ids, dtype=np.int32)) == text


def test_info_equals_cli_info_json(bundled):
    want = cli_json("info", BUNDLED_MODEL, "--json")
    got = bundled.info
    for key in ("format", "arch", "name", "n_vocab", "n_ctx", "n_embd", "n_layer", "n_head", "n_kv_head",
                "head_dim", "n_ff", "norm_eps", "tied_output", "qkv_bias", "rope", "parameters",
                "tensor_dtypes", "tokenizer"):
        assert got[key] == want[key], key


def test_generate_greedy_equals_cli(bundled):
    prompt = "And God said"
    out = cli("generate", BUNDLED_MODEL, "--prompt", prompt, "-n", "40", "--temp", "0", "--threads", "2").stdout
    got = bundled.generate(prompt, n=40, temp=0)
    assert prompt + got + "\n" == out
    assert len(got) > 20
    # Sampling is reproducible for a seed and follows the CLI as well.
    s = bundled.generate(prompt, n=20, temp=0.9, top_p=0.9, seed=7)
    assert s == bundled.generate(prompt, n=20, temp=0.9, top_p=0.9, seed=7)
    out = cli("generate", BUNDLED_MODEL, "--prompt", prompt, "-n", "20", "--temp", "0.9", "--top-p", "0.9",
              "--seed", "7").stdout
    assert prompt + s + "\n" == out


def test_perplexity_equals_cli_json(bundled, tmp_path):
    text = ("In the beginning God created the heaven and the earth. And the earth was without form, and void; "
            "and darkness was upon the face of the deep. And the Spirit of God moved upon the face of the waters. "
            "And God said, Let there be light: and there was light.\n") * 3
    path = tmp_path / "text.txt"
    path.write_text(text)
    want = cli_json("perplexity", BUNDLED_MODEL, "--text-file", path, "--ctx", "64", "--stride", "32", "--json")
    calls = []
    got = bundled.perplexity(text, ctx=64, stride=32, progress=lambda d, t: calls.append((d, t)))
    for key in ("tokens", "scored", "windows", "ctx", "stride", "bytes"):
        assert got[key] == want[key], key
    # The same arithmetic in the same order: equal to the CLI's printed precision.
    assert got["nll_per_token"] == pytest.approx(want["nll_per_token"], rel=1e-12)
    assert got["perplexity"] == pytest.approx(want["perplexity"], rel=1e-12)
    assert calls[-1] == (got["windows"], got["windows"]) and len(calls) == got["windows"]


def test_errors_are_exceptions_with_the_cli_message(tmp_path, ref_model):
    missing = str(tmp_path / "missing.gguf")
    with pytest.raises(attnsparse.FormatError) as e:
        attnsparse.Model(missing)
    line = cli("info", missing, check=False).stderr.strip()
    assert line == "attnsparse info: error: " + str(e.value)
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF\x03\x00\x00\x00garbage")
    with pytest.raises(attnsparse.Error) as e:
        attnsparse.Model(str(bad))
    assert str(bad) in str(e.value)
    with pytest.raises(ValueError, match="token id 32000 at index 1 is out of range"):
        ref_model.logits([1, 32000])
    with pytest.raises(ValueError, match="rows: row 5 is out of range"):
        ref_model.logits([1, 2, 3], rows=[5])
    with pytest.raises(ValueError, match="at least one token"):
        ref_model.logits([])
    with pytest.raises(ValueError, match="expected token ids"):
        ref_model.logits("hello")
    with pytest.raises(ValueError, match="layers: 2 is out of range"):
        ref_model.attention([1, 2], layers=[2])
    with pytest.raises(ValueError, match="top_p must be in"):
        ref_model.generate("x", n=2, top_p=0)
    with pytest.raises(ValueError, match="ctx must be at least 2"):
        ref_model.perplexity("hello there", ctx=1)


def test_attention_refuses_above_the_limit_pointing_to_analyze(ref_model):
    # 2 layers x 4 heads x n^2 x 4 bytes > 2 GiB for n = 8200: refused before allocating.
    with pytest.raises(ValueError, match="attnsparse.analyze") as e:
        ref_model.attention(np.ones(8200, dtype=np.int64))
    assert "limit 2 GB" in str(e.value)


def test_progress_exception_stops_the_call_and_the_model_stays_usable(ref_model):
    ids = ref_tokens(CASE)

    def stop(done, total):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        ref_model.attention(ids, progress=stop)
    seen = []
    ref_model.logits(ids, progress=lambda d, t: seen.append(d))
    assert seen == []  # logits reports no progress steps, but the call works
    assert ref_model.attention(ids, progress=lambda d, t: seen.append((d, t))).shape[0] == 2
    assert seen == [(1, 2), (2, 2)]


def test_ctrl_c_interrupts_a_long_call(bundled):
    # SIGINT from another thread while generate runs with the GIL released: the call ends
    # with KeyboardInterrupt at the next token instead of running to the end.
    long_text = "And God said, Let there be light: and there was light. " * 400
    timer = threading.Timer(0.3, lambda: os.kill(os.getpid(), signal.SIGINT))
    start = time.monotonic()
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            for _ in range(200):  # far longer than 0.3 s without the interrupt
                bundled.perplexity(long_text, ctx=128, stride=16)
    finally:
        timer.cancel()
    assert time.monotonic() - start < 30


def test_threads_option_gives_the_same_logits(ref_model):
    ids = ref_tokens(CASE)
    one = attnsparse.Model(reference("models", "llama-spm-f32.gguf"), threads=1).logits(ids, rows=[141])
    np.testing.assert_allclose(one, ref_model.logits(ids, rows=[141]), rtol=0, atol=1e-5)


def test_progress_true_draws_a_bar_on_stderr(ref_model, capfd, monkeypatch):
    import sys
    monkeypatch.setitem(sys.modules, "tqdm", None)  # the built-in bar, whether or not tqdm is installed
    ref_model.attention(ref_tokens(CASE), progress=True)
    err = capfd.readouterr().err
    assert "attention [" in err and "100.0% 2/2" in err
    with pytest.raises(ValueError, match="progress: expected None, True or a callable"):
        ref_model.attention(ref_tokens(CASE), progress="yes")


def test_long_calls_release_the_gil_and_run_concurrently(bundled):
    # A Python thread keeps counting while perplexity runs: with the GIL held for the
    # whole call it could not advance at all.
    text = "And God said, Let there be light: and there was light. " * 20
    stop = threading.Event()
    count = [0]

    def spin():
        while not stop.is_set():
            count[0] += 1

    t = threading.Thread(target=spin)
    t.start()
    try:
        time.sleep(0.05)
        before = count[0]
        start = time.monotonic()
        serial = bundled.perplexity(text, ctx=64, stride=16)
        elapsed = time.monotonic() - start
        during = count[0] - before
    finally:
        stop.set()
        t.join()
    assert elapsed > 0.05 and during > 1000, (elapsed, during)
    # Two threads on the same Model at once give the serial result.
    out = [None, None]
    threads = [threading.Thread(target=lambda i=i: out.__setitem__(i, bundled.perplexity(text, ctx=64, stride=16)))
               for i in range(2)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    for r in out:
        assert r["nll_per_token"] == serial["nll_per_token"] and r["windows"] == serial["windows"]


def test_a_real_trained_model_against_llama_cpp_and_its_published_facts():
    # ../shared/reference/real: Karpathy's stories260K (llama2.c), trained weights.
    # Logits max|d|/std(row) <= 1e-5 (2.5e-6 measured; an exact implementation gets ~3e-6),
    # attention max|dp| <= 3e-5 (6.3e-6 measured); greedy generation from "Once upon a
    # time" is the published sample; NLL of story.txt "about 0.62 nats/token" (0.616).
    with open(reference("real", "manifest.json")) as f:
        cases = json.load(f)["cases"]
    model = attnsparse.Model(reference("real", "stories260K.gguf"), threads=2)
    for c in cases:
        with open(reference("real", c["case"] + ".tokens.txt")) as f:
            ids = [int(x) for x in f.read().split()]
        got = model.logits(ids, rows=c["logit_rows"])
        want = np.fromfile(reference("real", c["logits_file"]), dtype="<f4").reshape(c["logits_shape"])
        assert (np.abs(got.astype(np.float64) - want).max(axis=1) / want.std(axis=1)).max() <= 1e-5, c["case"]
        attn = model.attention(ids)
        want = np.fromfile(reference("real", c["attn_file"]), dtype="<f4").reshape(c["attn_shape"])
        assert np.abs(attn - want).max() <= 3e-5, c["case"]
    with open(reference("real", "story.txt")) as f:
        story = f.read()
    with open(reference("real", "stories260K.story.tokens.txt")) as f:
        assert model.tokenize(story) == [int(x) for x in f.read().split()]
    assert abs(model.perplexity(story, ctx=128)["nll_per_token"] - 0.62) < 0.01
    published = (", there was a little girl named Lily. She loved to play outside in the park. One day, she saw a "
                 "big, red ball. She wanted to play with it, but it was too high.")
    assert model.generate("Once upon a time", n=60, temp=0).startswith(published)

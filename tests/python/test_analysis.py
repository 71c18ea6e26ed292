"""attnsparse.analyze and RowStats against `attnsparse analyze` on the bundled model."""
import json
import os
import pickle
import re

import numpy as np
import pytest

import attnsparse
from conftest import BUNDLED_MODEL, cli, reference

# Small and fast: the 3 LongBench sample records cut to 160 tokens, fewer resamples.
OPTIONS = dict(max_tokens=160, stride=2, min_query=16, bootstrap_resamples=200)
CLI_OPTIONS = ["--max-tokens", "160", "--stride", "2", "--min-query", "16", "--set", "bootstrap_resamples=200"]


def without_run(report):
    r = dict(report)
    r.pop("run", None)
    return r


@pytest.fixture(scope="module")
def sample():
    return reference("longbench", "sample.jsonl")


@pytest.fixture(scope="module")
def cli_report(sample, tmp_path_factory):
    out = tmp_path_factory.mktemp("cli")
    cli("analyze", BUNDLED_MODEL, "--data", sample, "--out", out, "--threads", "2", *CLI_OPTIONS)
    with open(out / "report.json") as f:
        text = f.read()
    return text, json.loads(text)


@pytest.fixture(scope="module")
def py_report(bundled, sample):
    return attnsparse.analyze(bundled, sample, **OPTIONS)


def test_analyze_equals_the_cli_report(py_report, cli_report):
    text, want = cli_report
    got = py_report.to_dict()
    assert without_run(got) == without_run(want)
    assert set(got["run"]) == set(want["run"])
    # Byte for byte apart from the run object (timing).
    strip = lambda t: json.dumps(without_run(json.loads(t)), sort_keys=True)
    assert strip(py_report.to_json()) == strip(text)
    assert got["counts"]["documents"] == 3 and got["counts"]["rows"] > 1000


def test_report_views(py_report, tmp_path):
    d = py_report.to_dict()
    assert [v["id"] for v in py_report.verdicts] == [1, 2, 3, 4, 5]
    assert py_report.verdicts == d["conjectures"]
    layers = py_report.layers
    n_layer = d["counts"]["layers"]
    widths = np.asarray(layers["width_norm_p90"], dtype=float)
    assert widths.shape == (n_layer,)
    want = [row["metrics"]["width_norm_p90"]["mean"] for row in d["per_layer"]]
    np.testing.assert_array_equal(widths, want)
    np.testing.assert_array_equal(np.asarray(layers["width_norm_p90_low"], dtype=float),
                                  [row["metrics"]["width_norm_p90"]["low"] for row in d["per_layer"]])
    heads = py_report.heads
    assert len(np.asarray(heads["layer"])) == n_layer * d["counts"]["heads"]
    np.testing.assert_array_equal(np.asarray(heads["feature_entropy_norm"], dtype=float),
                                  [h["features"]["entropy_norm"] for h in d["per_head"]])
    np.testing.assert_array_equal(np.asarray(heads["cluster"]), [h["cluster"] for h in d["per_head"]])
    json_path, html_path = py_report.save(str(tmp_path / "out"))
    with open(json_path) as f:
        assert f.read() == py_report.to_json()
    with open(html_path) as f:
        html = f.read()
    assert html.startswith("<!DOCTYPE html") or html.startswith("<!doctype html")
    assert "C1" in py_report.table()


def test_analyze_errors_are_the_cli_messages(bundled, sample, tmp_path):
    with pytest.raises(ValueError, match=r"--rows must be prefill, decode or both \(got 'sideways'\)"):
        attnsparse.analyze(bundled, sample, rows="sideways")
    with pytest.raises(ValueError, match="--stride must be >= 1"):
        attnsparse.analyze(bundled, sample, stride=0)
    with pytest.raises(ValueError, match="C5 gap must be one of"):
        attnsparse.analyze(bundled, sample, c5_gap=7)
    with pytest.raises(ValueError, match="unknown option 'nonsense'"):
        attnsparse.analyze(bundled, sample, nonsense=1)
    with pytest.raises(attnsparse.FormatError, match="missing.txt: no such file or directory"):
        attnsparse.analyze(bundled, str(tmp_path / "missing.txt"))
    bad = tmp_path / "bad.tok"
    bad.write_text("1 2 99999999 4\n")
    line = cli("analyze", BUNDLED_MODEL, "--data", bad, "--out", tmp_path / "o", check=False).stderr.strip()
    with pytest.raises(attnsparse.Error) as e:
        attnsparse.analyze(bundled, str(bad))
    assert line == "attnsparse analyze: error: " + str(e.value)


def test_rowstats_equals_analyze(bundled, py_report):
    d = py_report.to_dict()
    L, H = d["counts"]["layers"], d["counts"]["heads"]
    rs = attnsparse.RowStats(L, H, d["model"]["n_kv_heads"], stride=2, min_query=16, max_tokens=160,
                             bootstrap_resamples=200)
    # The documents as analyze reads them (context + question, BOS, middle truncation to
    # 160 tokens), their rows from Model.attention.
    docs = d["documents"]
    texts = document_texts(reference("longbench", "sample.jsonl"))
    assert len(texts) == len(docs)
    for doc, text in zip(docs, texts):
        ids = bundled.tokenize(text)
        original = len(ids)
        if len(ids) > 160:
            ids = ids[:80] + ids[len(ids) - 80:]  # middle truncation (LongBench)
        assert len(ids) == doc["tokens"]
        attn = bundled.attention(ids)
        rs.begin_document(len(ids), id=doc["id"], dataset=doc["dataset"], source=doc["source"],
                          original_tokens=original)
        for layer in range(L):
            rs.add_attention(layer, attn[layer])
        rs.end_document()
    got = rs.report(meta={"model": d["model"], "data": d["data"]}).to_dict()
    compare_reports(got, d)


def document_texts(path):
    # LongBench v1 records as io/corpus.cpp reads them: context, a blank line, the input.
    out = []
    with open(path) as f:
        for line in f:
            if line.strip():
                r = json.loads(line)
                out.append(r["context"] + ("\n\n" + r["input"] if r.get("input") else ""))
    return out


# The one quantity RowStats computes differently from analyze: the attention kernel gives
# analyze each row's entropy from its scores (ln p = (s - max) ln 2 - ln sum), RowStats
# takes it from the probabilities. Measured on the bundled model: 116 numbers differ, all
# entropy-derived (entropy, entropy_norm, effective_support and the head clustering that
# uses entropy_norm as a feature), by at most 6.2e-8 relative; every other number is
# identical.
ENTROPY_DERIVED = re.compile(r"entropy|effective_support|/clusters/|silhouette")


def compare_reports(got, want, entropy_rel=1e-6):
    """Equal except the run object; entropy-derived numbers to entropy_rel (0: exact)."""
    got, want = without_run(got), without_run(want)

    def walk(a, b, path):
        if isinstance(a, dict):
            assert isinstance(b, dict) and set(a) == set(b), path
            for k in a:
                walk(a[k], b[k], path + "/" + str(k))
        elif isinstance(a, list):
            assert isinstance(b, list) and len(a) == len(b), path
            for i, (x, y) in enumerate(zip(a, b)):
                walk(x, y, "%s[%d]" % (path, i))
        elif a != b and entropy_rel > 0 and isinstance(a, float) and isinstance(b, float) \
                and ENTROPY_DERIVED.search(path):
            assert a == pytest.approx(b, rel=entropy_rel), path
        else:
            assert a == b, path
    walk(got, want, "")


def test_rowstats_dtypes_pickle_merge_and_errors(bundled):
    ids = bundled.tokenize("In the beginning God created the heaven and the earth. " * 6)[:64]
    attn = bundled.attention(ids)
    L, H, n, _ = attn.shape

    def fill(rs, arr):
        rs.begin_document(n, id="a")
        for layer in range(L):
            rs.add_attention(layer, arr[layer])
        rs.end_document()

    a32 = attnsparse.RowStats(L, H, bootstrap_resamples=50)
    fill(a32, attn)
    a64 = attnsparse.RowStats(L, H, bootstrap_resamples=50)
    fill(a64, attn.astype(np.float64))
    # float64 holds the float32 values exactly: the same report.
    compare_reports(a64.report().to_dict(), a32.report().to_dict(), entropy_rel=0)
    a16 = attnsparse.RowStats(L, H, bootstrap_resamples=50)
    fill(a16, attn.astype(np.float16))
    r16 = a16.report().to_dict()
    assert r16["counts"] == a32.report().to_dict()["counts"]
    # One row at a time through add() equals the batched path.
    one = attnsparse.RowStats(L, H, bootstrap_resamples=50)
    one.begin_document(n, id="a")
    for layer in range(L):
        for h in range(H):
            for t in range(n):
                one.add(layer, h, t, attn[layer, h, t, : t + 1])
    one.end_document()
    compare_reports(one.report().to_dict(), a32.report().to_dict(), entropy_rel=0)
    # Pickle round trip: the same report; merge adds documents and rows.
    back = pickle.loads(pickle.dumps(a32))
    compare_reports(back.report().to_dict(), a32.report().to_dict(), entropy_rel=0)
    back.merge(a64)
    assert back.documents == 2 and back.rows == 2 * a32.rows
    # Errors: one line, ValueError, nothing added.
    rs = attnsparse.RowStats(L, H)
    with pytest.raises(ValueError, match="begin_document"):
        rs.add_attention(0, attn[0])
    rs.begin_document(n)
    with pytest.raises(ValueError, match="causal"):
        rs.add_rows(0, np.full((1, n), 1.0 / n, dtype=np.float32), [3], [0])
    with pytest.raises(ValueError, match="sum to"):
        rs.add_rows(0, np.full((1, n), 0.5, dtype=np.float32)[:, :4], [3], [0])
    with pytest.raises(ValueError, match="finite"):
        rs.add_rows(0, np.array([[np.nan, 1.0]]), [1], [0])
    with pytest.raises(ValueError, match="out of range"):
        rs.add_rows(0, attn[0, 0, :1], [0], [H])
    with pytest.raises(ValueError, match="layer 9 is out of range"):
        rs.add_rows(9, attn[0, 0, :1], [0], [0])
    rs.add_attention(0, attn[0])
    with pytest.raises(ValueError, match="already added"):
        rs.add_rows(0, attn[0, 0, :1], [0], [0])
    rs.add_attention(1, attn[1])
    with pytest.raises(ValueError, match="already closed"):
        rs.add_rows(0, attn[0, 0, :1], [0], [0])
    with pytest.raises(ValueError, match="every row is needed"):
        rs.end_document()
    assert rs.documents == 0
    with pytest.raises(ValueError, match="max_rows"):
        attnsparse.RowStats(L, H, max_rows=10)
    with pytest.raises(ValueError, match="unknown option"):
        attnsparse.RowStats(L, H, nonsense=3)


def test_rows_kept_in_memory_equal_the_cli_dump(bundled, sample, tmp_path):
    report = attnsparse.analyze(bundled, sample, dump_rows=True, **OPTIONS)
    rows = report.rows
    csv = tmp_path / "rows.csv"
    cli("analyze", BUNDLED_MODEL, "--data", sample, "--out", tmp_path / "o", "--dump-rows", csv, *CLI_OPTIONS)
    want = np.loadtxt(csv, delimiter=",", skiprows=1)
    with open(csv) as f:
        header = f.readline().strip().split(",")
    assert list(rows.keys()) == header
    assert len(np.asarray(rows["doc"])) == report.to_dict()["counts"]["rows"] == want.shape[0]
    for i, name in enumerate(header):
        np.testing.assert_array_equal(np.asarray(rows[name], dtype=np.float64), want[:, i], err_msg=name)
    # Widths are integers and every row obeys 1 <= W_0.5 <= W_0.9 <= W_0.99 <= n_keys = query + 1.
    q = np.asarray(rows["query"])
    assert np.all(np.asarray(rows["n_keys"]) == q + 1)
    assert np.all((1 <= np.asarray(rows["width_p50"])) & (np.asarray(rows["width_p50"]) <= np.asarray(rows["width_p90"]))
                  & (np.asarray(rows["width_p99"]) <= q + 1))
    assert attnsparse.analyze(bundled, sample, **OPTIONS).rows is None


def test_rowstats_takes_torch_tensors(bundled):
    torch = pytest.importorskip("torch")  # optional (python3-torch)
    ids = bundled.tokenize("And God said, Let there be light: and there was light. " * 4)[:48]
    attn = bundled.attention(ids)
    L, H, n, _ = attn.shape
    a, b = attnsparse.RowStats(L, H, bootstrap_resamples=50), attnsparse.RowStats(L, H, bootstrap_resamples=50)
    for rs, arr in ((a, attn), (b, torch.from_numpy(attn.copy()))):
        rs.begin_document(n)
        for layer in range(L):
            rs.add_attention(layer, arr[layer])
        rs.end_document()
    compare_reports(b.report().to_dict(), a.report().to_dict(), entropy_rel=0)


def test_interrupted_analyze_returns_nothing_and_leaves_a_resumable_checkpoint(bundled, sample, tmp_path):
    calls = []

    def stop(done, total):
        calls.append(done)
        if len(calls) == 6:  # one call per layer (4): inside the second document
            raise KeyboardInterrupt

    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        attnsparse.analyze(bundled, sample, out=str(out), progress=stop, **OPTIONS)
    assert not (out / "report.json").exists()
    assert (out / "checkpoint.cbor").exists()
    # The checkpoint of the finished document lets resume=True finish the same report.
    with pytest.warns(RuntimeWarning, match="resumed after 1 documents"):
        resumed = attnsparse.analyze(bundled, sample, out=str(out), resume=True, **OPTIONS).to_dict()
    fresh = attnsparse.analyze(bundled, sample, **OPTIONS).to_dict()
    assert without_run(resumed) == without_run(fresh)


def test_documents_in_memory_equal_the_same_files(bundled, tmp_path):
    texts = ["And God said, Let there be light: and there was light. " * 8,
             "In the beginning God created the heaven and the earth. " * 9]
    files = []
    for i, t in enumerate(texts):
        p = tmp_path / ("doc%d.txt" % i)
        p.write_text(t)
        files.append(str(p))
    ids = bundled.tokenize(texts[1])
    tok = tmp_path / "doc2.tok"
    tok.write_text(" ".join(map(str, ids)))
    opts = dict(max_tokens=128, bootstrap_resamples=50)
    from_files = attnsparse.analyze(bundled, files + [str(tok)], **opts).to_dict()
    in_memory = attnsparse.analyze(bundled, [{"text": texts[0], "id": files[0], "dataset": "doc0"},
                                             {"text": texts[1], "id": files[1], "dataset": "doc1"},
                                             {"tokens": np.array(ids), "id": str(tok), "dataset": "doc2"}],
                                   **opts).to_dict()
    for key in ("counts", "per_layer", "per_head", "clusters", "persistence", "conjectures", "distributions"):
        assert in_memory[key] == from_files[key], key
    assert [d["id"] for d in in_memory["documents"]] == [d["id"] for d in from_files["documents"]]
    with pytest.raises(ValueError, match=r"documents\[0\]: give exactly one of 'text' and 'tokens'"):
        attnsparse.analyze(bundled, [{"id": "x"}])
    with pytest.raises(ValueError, match=r"documents\[0\].tokens: token id 99999 at index 0 is out of range"):
        attnsparse.analyze(bundled, [{"tokens": [99999]}])


def test_tables_without_pandas_are_dicts_of_numpy_arrays(py_report, monkeypatch):
    import sys
    monkeypatch.setitem(sys.modules, "pandas", None)  # import pandas now raises ImportError
    layers = py_report.layers
    assert isinstance(layers, dict)
    assert layers["layer"].dtype == np.int64 and list(layers["layer"]) == list(range(len(layers["layer"])))
    want = [row["metrics"]["sink_mass"]["mean"] for row in py_report.to_dict()["per_layer"]]
    np.testing.assert_array_equal(layers["sink_mass"], want)
    heads = py_report.heads
    assert isinstance(heads, dict) and heads["head"].dtype == np.int64


def test_windowed_layer_rows_and_layer_kinds(tmp_path):
    # gemma2 reference: window 32 on layer 0, layer 1 global. Rows of layer 0 hold
    # min(t+1, 32) keys, and their sink field is empty (NaN) once key 0 left the window.
    model = attnsparse.Model(reference("arch", "models", "gemma2-f16.gguf"), threads=2)
    ids = [int(x) for x in open(reference("arch", "expected", "gemma2-f16.text.tokens.txt")).read().split()]
    report = attnsparse.analyze(model, [{"tokens": np.array(ids), "id": "text"}], min_query=0,
                                bootstrap_resamples=50, dump_rows=True)
    rows = report.rows
    layer, q = np.asarray(rows["layer"]), np.asarray(rows["query"])
    n_keys, sink = np.asarray(rows["n_keys"]), np.asarray(rows["sink_mass"], dtype=np.float64)
    np.testing.assert_array_equal(n_keys[layer == 0], np.minimum(q[layer == 0] + 1, 32))
    np.testing.assert_array_equal(n_keys[layer == 1], q[layer == 1] + 1)
    assert np.all(np.isnan(sink[(layer == 0) & (q >= 32)]))
    assert not np.any(np.isnan(sink[(layer == 1) | (q < 32)]))
    per_layer = report.to_dict()["per_layer"]
    assert per_layer[0]["attention"]["kind"] == "windowed" and per_layer[0]["attention"]["window"] == 32
    assert per_layer[1]["attention"]["kind"] == "global"
    assert per_layer[0]["sink_rows"] == 4 * 32
    layers = report.layers
    assert list(np.asarray(layers["attention_window"])) == [32, 0]

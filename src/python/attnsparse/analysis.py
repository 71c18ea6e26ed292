"""attnsparse.analyze, Report and RowStats."""
import json
import os
import tempfile

import numpy as np

from . import _core
from .progress import callback as _callback

_SETTING_NAMES = frozenset(_core.setting_names())


def _tables_from(records, key_fields):
    """Rows of dicts with a 'metrics' dict of intervals -> column name -> list of values."""
    cols = {}
    for rec in records:
        row = {k: rec.get(k) for k in key_fields}
        for k, v in rec.items():
            if k in key_fields or k == "metrics":
                continue
            if isinstance(v, (int, float, str, bool)) or v is None:
                row[k] = v
            elif isinstance(v, dict):  # features, persistence per gap: feature_x, persistence_16_overlap_k32
                prefix = "feature" if k == "features" else k
                for k2, v2 in v.items():
                    if isinstance(v2, dict):
                        for k3, v3 in v2.items():
                            if isinstance(v3, (int, float)) or v3 is None:
                                row["%s_%s_%s" % (prefix, k2, k3)] = v3
                    elif isinstance(v2, (int, float)) or v2 is None:
                        row["%s_%s" % (prefix, k2)] = v2
        for name, iv in (rec.get("metrics") or {}).items():
            if isinstance(iv, dict):
                for part in ("mean", "low", "high"):
                    row[name if part == "mean" else name + "_" + part] = iv.get(part)
            else:
                row[name] = iv
        for k in row:
            cols.setdefault(k, [])
        for k in cols:
            cols[k].append(row.get(k))
    return cols


def _as_table(cols):
    try:
        import pandas as pd  # optional
        return pd.DataFrame(cols)
    except ImportError:
        out = {}
        for k, v in cols.items():
            if all(x is None or isinstance(x, (int, float)) for x in v) and not all(
                    isinstance(x, bool) for x in v if x is not None):
                out[k] = np.array([np.nan if x is None else x for x in v], dtype=np.float64)
                if all(isinstance(x, int) and not isinstance(x, bool) for x in v):
                    out[k] = np.array(v, dtype=np.int64)
            else:
                out[k] = np.array(v, dtype=object)
        return out


class Report:
    """The report of an analysis (docs/report-schema.md), as `analyze` writes report.json."""

    def __init__(self, json_text):
        self._text = json_text
        self._dict = json.loads(json_text)
        self._rows = None

    @property
    def rows(self):
        """The per-row metrics (analyze(..., dump_rows=True)): a pandas DataFrame when pandas
        is installed, else a dict of numpy arrays (columns of docs/analysis.md's row dump:
        doc, layer, head, query, n_keys, width_p50..p99, entropy, sink_mass, recent_1..128).
        None when the rows were not asked for."""
        if self._rows is None:
            return None
        try:
            import pandas as pd  # optional
            return pd.DataFrame(self._rows)
        except ImportError:
            return dict(self._rows)

    def to_dict(self):
        """report.json as a dict (a fresh copy)."""
        return json.loads(self._text)

    def to_json(self):
        """report.json's text, byte for byte as the command line writes it."""
        return self._text

    @property
    def verdicts(self):
        """The five conjectures: list of dicts (id, name, verdict, evidence, ...)."""
        return [dict(c) for c in self._dict.get("conjectures", [])]

    @property
    def layers(self):
        """per_layer as a table: one row per layer; metric NAME (mean), NAME_low, NAME_high.
        A pandas DataFrame when pandas is installed, else a dict of numpy arrays."""
        return _as_table(_tables_from(self._dict.get("per_layer", []), ("layer",)))

    @property
    def heads(self):
        """per_head as a table (one row per layer and head), like .layers: layer, head,
        cluster, kv_group, rows, each metric, feature_NAME (the clustering features) and
        persistence_GAP_NAME (top-k overlap and H2O mass per gap)."""
        return _as_table(_tables_from(self._dict.get("per_head", []), ("layer", "head")))

    def table(self):
        """The verdict table the command line prints."""
        return _core.verdict_table(self._text)

    def html(self):
        """report.html's text."""
        return _core.report_html(self._text)

    def save(self, directory):
        """Writes DIRECTORY/report.json and DIRECTORY/report.html; returns their paths."""
        os.makedirs(directory, exist_ok=True)
        paths = []
        for name, text in (("report.json", self._text), ("report.html", self.html())):
            path = os.path.join(directory, name)
            tmp = path + ".tmp"
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(text)
            os.replace(tmp, path)
            paths.append(path)
        return tuple(paths)

    def __getitem__(self, key):
        return self._dict[key]

    def __repr__(self):
        c = self._dict.get("counts", {})
        v = ", ".join("C%s %s" % (x.get("id"), x.get("verdict")) for x in self._dict.get("conjectures", []))
        return "<attnsparse.Report: %s documents, %s rows, %s layers x %s heads; %s>" % (
            c.get("documents"), c.get("rows"), c.get("layers"), c.get("heads"), v)


def _split_settings(options, where):
    settings = {}
    for k, v in options.items():
        if k not in _SETTING_NAMES:
            raise _core.UsageError("%s: unknown option '%s' (options: the keyword arguments in docs/python.md, "
                                   "and the --set parameters: %s)" % (where, k, " ".join(sorted(_SETTING_NAMES))))
        settings[k] = v
    return settings


def analyze(model, data, *, max_tokens=0, rows="prefill", stride=1, min_query=16, decode_tokens=32,
            max_rows=0, seed=1, out=None, resume=False, dump_rows=None, progress=None, **settings):
    """The `analyze` verb from Python: streamed statistics and the five verdicts.

    model: a Model (or a path). data: a file or directory, or a list of them (.txt, .tok,
    LongBench/RULER .jsonl, LongBench v2 .json), and/or documents in memory as dicts
    {"text": str} (tokenized with BOS as the model says) or {"tokens": ids} (used as they
    are, like a .tok file), each with an optional "id" and "dataset"; files come first. Keyword arguments are the verb's options
    (max_tokens, rows, stride, min_query, decode_tokens, max_rows, seed) and its --set
    parameters by name (c1_rho=..., bootstrap_resamples=...). out: a directory for the
    checkpoint (resume=True continues from it); nothing is written there otherwise, use
    Report.save. dump_rows: True keeps every analysed row's metrics as Report.rows (numpy
    arrays; 16 numbers per row), or a file name for the --dump-rows CSV. Returns a Report.
    """
    from .model import Model
    if not isinstance(model, _core.Model):
        model = Model(model)
    if isinstance(data, (str, os.PathLike, dict)):
        data = [data]
    paths = [os.fspath(d) for d in data if isinstance(d, (str, os.PathLike))]
    documents = [d for d in data if not isinstance(d, (str, os.PathLike))]

    def run(dump_path):
        return _core.analyze_json(model, paths, documents, int(max_tokens), str(rows), int(stride), int(min_query),
                                  int(decode_tokens), int(max_rows), int(seed), _split_settings(settings, "analyze"),
                                  "" if out is None else os.fspath(out), bool(resume), dump_path,
                                  _callback(progress, "analyze"))

    if dump_rows is True:
        with tempfile.TemporaryDirectory(prefix="attnsparse-rows-") as tmp:
            path = os.path.join(tmp, "rows.csv")
            report = Report(run(path))
            report._rows = _load_rows(path)
        return report
    return Report(run("" if dump_rows in (None, False) else os.fspath(dump_rows)))


_INT_COLUMNS = ("doc", "layer", "head", "query", "n_keys", "width_p50", "width_p90", "width_p95", "width_p99")


def _load_rows(path):
    """The --dump-rows CSV (docs/analysis.md) as a dict of numpy arrays, one per column;
    sink_mass is NaN where the field is empty (key 0 outside a layer's sliding window)."""
    with open(path) as f:
        header = f.readline().strip().split(",")
    empty_is_nan = {header.index("sink_mass"): lambda s: float(s) if s.strip() else np.nan}
    table = np.loadtxt(path, delimiter=",", skiprows=1, ndmin=2, dtype=np.float64, converters=empty_is_nan)
    cols = {}
    for i, name in enumerate(header):
        col = table[:, i] if table.size else np.zeros(0)
        cols[name] = col.astype(np.int64) if name in _INT_COLUMNS else col
    return cols


class RowStats:
    """The analysis engine fed with attention rows captured anywhere (e.g. a PyTorch model).

    RowStats(n_layers, n_heads, n_kv_heads=None, min_query=16, stride=1, seed=1,
    max_tokens=0, **settings) takes the options of analyze that concern rows (prefill
    rows; no max_rows; max_tokens is only recorded in the report, as the window the
    documents were cut to) and the --set parameters. Per document: begin_document(n_tokens, id=, dataset=), then every
    row of every layer and head -- row t is the attention of query t over keys 0..t --
    with add_rows / add (each layer's rows together), then end_document(). report()
    gives the Report analyze gives for the same rows. Mergeable (merge) and picklable.
    """

    def __init__(self, n_layers, n_heads, n_kv_heads=None, *, min_query=16, stride=1, seed=1,
                 rows="prefill", max_rows=0, max_tokens=0, **settings):
        self._core = _core.RowStatsCore(int(n_layers), int(n_heads), int(min_query), int(stride), int(seed),
                                        str(rows), int(max_rows), int(max_tokens),
                                        _split_settings(settings, "RowStats"))
        self.n_kv_heads = int(n_kv_heads) if n_kv_heads is not None else int(n_heads)

    n_layers = property(lambda self: self._core.n_layers)
    n_heads = property(lambda self: self._core.n_heads)
    documents = property(lambda self: self._core.documents, doc="documents added (ended)")
    rows = property(lambda self: self._core.rows, doc="rows analysed so far (ended documents)")

    def begin_document(self, n_tokens, id="", dataset="", source="", original_tokens=None):
        """Starts a document of n_tokens tokens (ends an open one first). id, dataset,
        source and original_tokens (its length before truncation) go into the report;
        dataset groups documents (per-dataset clusters, as analyze)."""
        self._core.begin_document(int(n_tokens), str(id), str(dataset), str(source),
                                  int(original_tokens or 0))

    def end_document(self):
        """Adds the open document; every (layer, head, query) row must have been given."""
        self._core.end_document()

    def add_rows(self, layer, probs, query_pos, heads):
        """probs [rows, n] (float32/float64/float16 or anything with __array__; row r holds
        keys 0..query_pos[r], zeros after), query_pos [rows], heads [rows]."""
        self._core.add_rows(int(layer), probs, query_pos, heads)

    def add(self, layer, head, query_pos, probs):
        """One row: probs over keys 0..query_pos (length >= query_pos + 1)."""
        self._core.add_rows(int(layer), np.asarray(probs).reshape(1, -1), [int(query_pos)], [int(head)])

    def add_attention(self, layer, attn):
        """Every row of one layer from a causal attention array [heads, n, n]
        (as Model.attention(ids)[layer] or a PyTorch model's attention weights)."""
        a = np.asarray(attn)
        if a.ndim != 3 or a.shape[1] != a.shape[2]:
            raise _core.UsageError("add_attention: expected [heads, n, n], got shape %s" % (a.shape,))
        h, n, _ = a.shape
        self._core.add_rows(int(layer), a.reshape(h * n, n), np.tile(np.arange(n), h), np.repeat(np.arange(h), n))

    def merge(self, other):
        """Adds another RowStats' documents (same shape and options)."""
        self._core.merge(other._core)
        return self

    def report(self, meta=None):
        """The Report (ends an open document). meta: optional 'model', 'data', 'run' objects
        copied into report.json (model.n_kv_heads sets the KV group of each head)."""
        meta = dict(meta or {})
        model = dict(meta.get("model") or {})
        model.setdefault("n_layer", self.n_layers)
        model.setdefault("n_head", self.n_heads)
        model.setdefault("n_kv_heads", self.n_kv_heads)
        meta["model"] = model
        return Report(self._core.report_json(json.dumps(meta)))

    def __getstate__(self):
        return {"core": self._core.state(), "n_kv_heads": self.n_kv_heads}

    def __setstate__(self, state):
        self._core = _core.RowStatsCore.from_state(state["core"])
        self.n_kv_heads = state["n_kv_heads"]

    def __repr__(self):
        return "<attnsparse.RowStats %d layers x %d heads: %d documents, %d rows>" % (
            self.n_layers, self.n_heads, self.documents, self.rows)

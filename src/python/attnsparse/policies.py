"""attnsparse.eval_policy: what sparse-attention / KV-eviction policies cost against dense
attention on the same documents (the `eval-policy` verb's engine; docs/policies.md)."""
import json
import os

from . import _core
from ._files import save_texts


class EvalReport:
    """report.json of `attnsparse eval-policy --out DIR` as an object: .to_dict(), .to_json(),
    .policies (a pandas DataFrame when pandas is installed, else a dict of lists, one entry
    per evaluated policy), .html() and .save(directory)."""

    def __init__(self, json_text, html):
        self._text = json_text
        self._html = html
        self._dict = json.loads(json_text)

    def to_dict(self):
        return json.loads(self._text)

    def to_json(self):
        return self._text

    def html(self):
        return self._html

    @property
    def dense_ppl(self):
        return self._dict["dense"]["ppl"]

    @property
    def policies(self):
        rows = []
        for p in self._dict["policies"]:
            row = {k: v for k, v in p.items() if not isinstance(v, (dict, list))}
            sweep = p.get("sweep")
            if isinstance(sweep, dict):
                row["sweep_field"] = sweep.get("field")
                row["sweep_value"] = sweep.get("value")
            rows.append(row)
        try:
            import pandas as pd  # optional
            return pd.DataFrame(rows)
        except ImportError:
            keys = []
            for r in rows:
                keys.extend(k for k in r if k not in keys)
            return {k: [r.get(k) for r in rows] for k in keys}

    def save(self, directory):
        """Writes DIRECTORY/report.json and report.html (as `eval-policy --out DIRECTORY`)."""
        return save_texts(directory, (("report.json", self._text), ("report.html", self._html)))

    def __getitem__(self, key):
        return self._dict[key]


def eval_policy(model, data, policies=None, *, max_tokens=1024, max_docs=0, chunk=512, decode_tokens=0,
                progress=None):
    """Evaluates policies against dense attention (as `attnsparse eval-policy`).

    model: a Model (or a path). data: a file or directory or a list of them. policies: a
    spec string or a list of them, as --policy takes them (specs, per-layer maps, JSON map
    files, sweeps such as "topk={8,16,32}"); None: the verb's default set. The other
    keywords are the verb's options. Returns an EvalReport. Cost: one dense and one oracle
    pass per document plus one pass per policy."""
    from .model import Model
    if not isinstance(model, _core.Model):
        model = Model(model)
    if isinstance(data, (str, os.PathLike)):
        data = [data]
    paths = [os.fspath(d) for d in data]
    if policies is None:
        specs = []
    elif isinstance(policies, str):
        specs = [policies]
    else:
        specs = [str(p.spec) if hasattr(p, "spec") else str(p) for p in policies]
    json_text, html = _core.eval_policy_json(model, paths, specs, int(max_tokens), int(max_docs), int(chunk),
                                             int(decode_tokens), progress)
    return EvalReport(json_text, html)

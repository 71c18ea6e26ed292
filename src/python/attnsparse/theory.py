"""attnsparse.theory: the n^C-sparsity simulator (docs/theory.md)."""
import json
import os

from . import _core
from ._files import save_texts


class Simulation:
    """The result of simulate() (theory.json of `attnsparse theory simulate`) or of fit()
    (theory_fit.json of `attnsparse theory fit`): .to_dict(), .to_json(), .html(), .save()."""

    def __init__(self, json_text, html, stem="theory"):
        self._stem = stem
        self._text = json_text
        self._html = html
        self._dict = json.loads(json_text)

    def to_dict(self):
        return json.loads(self._text)

    def to_json(self):
        return self._text

    def html(self):
        return self._html

    def save(self, directory):
        """Writes DIRECTORY/theory.json and theory.html (fit: theory_fit.json / .html)."""
        return save_texts(directory, ((self._stem + ".json", self._text), (self._stem + ".html", self._html)))

    def __getitem__(self, key):
        return self._dict[key]


def simulate(n="1024:131072", d=128, sigma=None, norm_bound=None, weight_frobenius=None, logit_c=None,
             eps=(0.01, 0.05), trials=32, seed=1, k_const=8, alpha=None, exponent=None, bootstrap=1000,
             level=0.95, center="mean", keys="direct", select="quickselect", errors=True, threads=0,
             progress=None):
    """`attnsparse theory simulate` from Python (same options, same theory.json).

    n: 'LO:HI' or (lo, hi); d, sigma, norm_bound, weight_frobenius, logit_c, eps: a number or
    a list. progress: a callable receiving each progress line (str), or None.
    """
    if progress is not None and not callable(progress):
        raise _core.UsageError("progress: expected None or a callable progress(line)")
    text, html = _core.simulate(n, d, sigma, norm_bound, weight_frobenius, logit_c,
                                None if eps is None else list(eps) if not isinstance(eps, (int, float)) else eps,
                                int(trials), int(seed), int(k_const), alpha, exponent, int(bootstrap), float(level),
                                str(center), str(keys), str(select), bool(errors), int(threads), progress)
    return Simulation(text, html)


def fit(model, data, eps=(0.01, 0.05), max_tokens=2048, min_n=16, docs=0, rows_per_bin=32, bootstrap=500,
        level=0.95, seed=1, threads=None, progress=None):
    """`attnsparse theory fit` from Python: k_eps of the model's real attention rows against
    the prefix length n, the fitted C per layer and head with its bootstrap interval, and
    the budget rules; .to_dict() is theory_fit.json. model: a Model or a path; data: a
    file/directory or a list of them. threads: default the Model's."""
    if progress is not None and not callable(progress):
        raise _core.UsageError("progress: expected None or a callable progress(line)")
    path = model.path if isinstance(model, _core.Model) else os.fspath(model)
    if threads is None:
        threads = model.threads if isinstance(model, _core.Model) else 0
    if isinstance(data, (str, os.PathLike)):
        data = [data]
    text, html = _core.fit(path, [os.fspath(d) for d in data],
                           None if eps is None else list(eps) if not isinstance(eps, (int, float)) else eps,
                           int(max_tokens), int(min_n), int(docs), int(rows_per_bin), int(bootstrap), float(level),
                           int(seed), int(threads), progress)
    return Simulation(text, html, "theory_fit")

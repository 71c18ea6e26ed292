"""attnsparse.theory: the n^C-sparsity simulator (docs/theory.md)."""
import json
import os

from . import _core


class Simulation:
    """The result of simulate(): theory.json of `attnsparse theory simulate` as .to_dict()."""

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

    def save(self, directory):
        """Writes DIRECTORY/theory.json and DIRECTORY/theory.html."""
        os.makedirs(directory, exist_ok=True)
        paths = []
        for name, text in (("theory.json", self._text), ("theory.html", self._html)):
            path = os.path.join(directory, name)
            with open(path + ".tmp", "w", encoding="utf-8") as f:
                f.write(text)
            os.replace(path + ".tmp", path)
            paths.append(path)
        return tuple(paths)

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

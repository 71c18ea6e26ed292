"""attnsparse from Python: models, attention, the streamed analysis and its verdicts.

    import attnsparse
    m = attnsparse.Model("models/kjv-llama.gguf")
    ids = m.tokenize("In the beginning God created")
    logits = m.logits(ids)                      # float32 [n, vocab]
    attn = m.attention(ids)                     # float32 [layers, heads, n, n]
    report = attnsparse.analyze(m, "chapters.jsonl", max_tokens=256)
    report.verdicts, report.layers, report.save("out")

    rs = attnsparse.RowStats(n_layers, n_heads)  # rows captured anywhere
    rs.begin_document(n_tokens); rs.add_rows(layer, probs, query_pos, heads); ...
    rs.report()

docs/python.md describes every call and its cost. Errors raise attnsparse.Error (bad
arguments: attnsparse.UsageError, also a ValueError; bad files: attnsparse.FormatError)
with the command line's one-line message.
"""
import os as _os

# The command line runs with GOMP_SPINCOUNT=10000 (README, "Threads"); libgomp reads it
# when it is loaded, i.e. when _core is imported below. A value the user set is kept.
if "OMP_WAIT_POLICY" not in _os.environ and "GOMP_SPINCOUNT" not in _os.environ:
    _os.environ["GOMP_SPINCOUNT"] = "10000"

from . import _core  # noqa: E402
from ._core import Error, FormatError, UsageError, Policy, PolicyMap  # noqa: E402,F401
from .model import Model  # noqa: E402,F401
from ._core import ATTENTION_LIMIT_BYTES, POLICY_HELP  # noqa: E402,F401
from .analysis import Report, analyze, RowStats  # noqa: E402,F401
from . import theory  # noqa: E402,F401
from .policies import EvalReport, eval_policy  # noqa: E402,F401

__version__ = "0.1.0"
__all__ = ["Model", "Policy", "PolicyMap", "Report", "RowStats", "analyze", "eval_policy", "EvalReport", "theory", "Error", "UsageError",
           "FormatError", "ATTENTION_LIMIT_BYTES"]

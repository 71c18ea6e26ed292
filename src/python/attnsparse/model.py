"""attnsparse.Model: the engine's model with numpy in and out."""
from . import _core
from .progress import callback as _callback


class Model(_core.Model):
    """A model from a .gguf file or a Hugging Face directory (weights memory-mapped).

    threads: CPU threads of its calls (None or 0: all cores, or OMP_NUM_THREADS).
    Long calls release the GIL, stop with KeyboardInterrupt on Ctrl-C and take
    progress=None | True (a bar on stderr) | callable(done, total).
    """

    def __init__(self, path, threads=None):
        super().__init__(str(path), threads)

    def logits(self, ids, rows=None, progress=None):
        """Logits of ids evaluated as one causal batch from position 0: float32 [rows, vocab]
        (rows: None = every position, else a list of positions)."""
        return super().logits(ids, rows, _callback(progress, "logits"))

    def attention(self, ids, layers=None, heads=None, progress=None):
        """Post-softmax attention of every query over keys 0..t: float32 [L, H, n, n] for the
        chosen layers and heads (None = all; zeros above the diagonal). Refuses arrays above
        ATTENTION_LIMIT_BYTES: use attnsparse.analyze for long inputs."""
        return super().attention(ids, layers, heads, _callback(progress, "attention"))

    def generate(self, prompt, n=64, temp=0.8, top_p=0.95, seed=1, progress=None):
        """The continuation of prompt (str): up to n tokens, greedy when temp <= 0, else
        temperature + top-p sampling reproducible for a seed. Stops at end-of-sequence."""
        return super().generate(prompt, n, temp, top_p, seed, _callback(progress, "generate"))

    def generate_ids(self, ids, n=64, temp=0.8, top_p=0.95, seed=1, progress=None):
        """As generate, from token ids to the list of new token ids."""
        return super().generate_ids(ids, n, temp, top_p, seed, _callback(progress, "generate"))

    def perplexity(self, text, ctx=None, stride=None, progress=None):
        """Sliding-window perplexity (the CLI's `perplexity --json` fields as a dict)."""
        return super().perplexity(text, ctx, stride, _callback(progress, "perplexity"))

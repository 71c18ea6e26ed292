"""Progress callbacks: progress=True shows a one-line bar on stderr (tqdm when installed)."""
import sys
import time


class _Bar:
    """A minimal self-overwriting bar: label, percentage, counts, rate."""

    def __init__(self, label):
        self.label = label
        self.start = time.monotonic()
        self.last = 0.0
        self.tqdm = None
        try:
            from tqdm import tqdm  # optional
            self.tqdm = tqdm(desc=label, unit="step")
        except ImportError:
            pass

    def __call__(self, done, total):
        if self.tqdm is not None:
            if total and self.tqdm.total != total:
                self.tqdm.total = total
            self.tqdm.n = done
            self.tqdm.refresh()
            if total and done >= total:
                self.tqdm.close()
            return
        now = time.monotonic()
        finished = bool(total) and done >= total
        if not finished and now - self.last < 0.2:
            return
        self.last = now
        frac = min(1.0, done / total) if total else 0.0
        width = 24
        filled = int(frac * width)
        secs = now - self.start
        sys.stderr.write("\r%s [%s%s] %5.1f%% %d/%d  %.1f s" % (
            self.label, "#" * filled, "." * (width - filled), 100 * frac, done, total or 0, secs))
        if finished:
            sys.stderr.write("\n")
        sys.stderr.flush()


def callback(progress, label):
    """None/False: no progress; True: a bar; a callable: called as progress(done, total)."""
    if progress is None or progress is False:
        return None
    if progress is True:
        return _Bar(label)
    if not callable(progress):
        raise ValueError("progress: expected None, True or a callable progress(done, total)")
    return progress

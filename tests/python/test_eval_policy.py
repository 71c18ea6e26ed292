"""attnsparse.eval_policy against `attnsparse eval-policy` on the same inputs."""
import json
import os

import pytest

import attnsparse
from conftest import BUNDLED_MODEL, cli, reference

TIMING = ("wall_s", "wall_relative", "ms_per_token", "threads")


def strip_timing(x):
    if isinstance(x, dict):
        return {k: strip_timing(v) for k, v in x.items() if k not in TIMING}
    if isinstance(x, list):
        return [strip_timing(v) for v in x]
    return x


def test_eval_policy_equals_the_cli_report(tmp_path):
    data = reference("longbench", "sample.jsonl")
    specs = ["topk={8,16}", "sink=4,window=32"]
    out = tmp_path / "cli"
    args = ["eval-policy", BUNDLED_MODEL, "--data", data, "--max-tokens", "128", "--threads", "1", "--out", str(out)]
    for s in specs:
        args += ["--policy", s]
    cli(*args)
    want = json.loads((out / "report.json").read_text())
    model = attnsparse.Model(BUNDLED_MODEL, threads=1)
    seen = []
    rep = attnsparse.eval_policy(model, data, specs, max_tokens=128, progress=lambda d, t: seen.append((d, t)))
    got = rep.to_dict()
    assert strip_timing(got["dense"]) == strip_timing(want["dense"])
    assert len(got["policies"]) == len(want["policies"]) == 3
    for g, w in zip(got["policies"], want["policies"]):
        assert strip_timing(g) == strip_timing(w)
    assert got["policies"][0]["sweep"]["field"] == got["policies"][1]["sweep"]["field"]
    assert seen and seen[-1][0] == seen[-1][1]
    table = rep.policies
    assert len(table["policy"]) == 3
    assert rep.dense_ppl == want["dense"]["ppl"]
    paths = rep.save(tmp_path / "py")
    assert all(os.path.getsize(p) > 0 for p in paths)
    assert "<svg" in rep.html()


def test_eval_policy_errors_are_the_clis(bundled, tmp_path):
    data = reference("longbench", "sample.jsonl")
    with pytest.raises(attnsparse.UsageError) as e:
        attnsparse.eval_policy(bundled, data, ["topk=0"], max_tokens=64)
    r = cli("eval-policy", BUNDLED_MODEL, "--data", data, "--policy", "topk=0", "--max-tokens", "64",
            "--out", str(tmp_path / "r.json"), check=False)
    assert r.returncode != 0
    assert str(e.value) in r.stderr
    assert not (tmp_path / "r.json").exists()
    with pytest.raises(attnsparse.UsageError):
        attnsparse.eval_policy(bundled, data, max_tokens=1)

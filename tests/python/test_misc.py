"""Policy and theory.simulate against the command line; the package's own files."""
import json
import math
import os
import pickle
import subprocess
import sys

import pytest

import attnsparse
from conftest import SOURCE_DIR, cli


def test_policy_parse_and_cli_errors(tmp_path):
    p = attnsparse.Policy("sink=4,window=64")
    assert p.spec == "sink=4,window=64" and p.kind == "sink" and p.family == "positional"
    assert attnsparse.Policy(p.spec) == p
    assert pickle.loads(pickle.dumps(p)) == p
    assert attnsparse.Policy("topk=32").keep_count(100) == 32
    d = attnsparse.Policy("dyntopk=alpha:1,C:0.5")
    assert d.family == "content" and d.keep_count(1024) == 32  # ceil(1 * 1024^0.5)
    assert attnsparse.Policy("h2o=budget:64,recent:16").family == "evicting"
    assert attnsparse.Policy("quest=page:16,pages:4").family == "paged"
    with pytest.raises(ValueError) as e:
        attnsparse.Policy("window=-3")
    assert str(e.value).startswith("policy 'window=-3'")
    with pytest.raises(attnsparse.UsageError, match="policy 'nonsense'"):
        attnsparse.Policy("nonsense")


def test_simulate_equals_cli_theory_json(tmp_path):
    args = dict(n="256:2048", d=32, logit_c=[0.5], eps=[0.05], trials=8, bootstrap=100, seed=3)
    sim = attnsparse.theory.simulate(**args)
    out = tmp_path / "sim"
    cli("theory", "simulate", "--n", "256:2048", "--d", "32", "--logit-c", "0.5", "--eps", "0.05", "--trials", "8",
        "--bootstrap", "100", "--seed", "3", "--out", out)
    with open(out / "theory.json") as f:
        want = json.load(f)
    got = sim.to_dict()
    want.pop("seconds", None)
    got.pop("seconds", None)
    assert got == want
    paths = sim.save(str(tmp_path / "saved"))
    assert all(os.path.getsize(p) > 0 for p in paths)
    with pytest.raises(ValueError, match="give at least one regime"):
        attnsparse.theory.simulate(n="256:512")
    with pytest.raises(ValueError, match="go together"):
        attnsparse.theory.simulate(n="256:512", norm_bound=2)


def test_simulate_fit_against_the_closed_form():
    # logit-c regime: i.i.d. N(0, sigma_n^2) logits with sigma_n^2 = 2 c ln n have the
    # closed form k_eps ~= n Q(sigma_n + Phi^-1(eps)) (docs/theory.md), computed here with
    # Python's NormalDist. The fitted exponent C must be near the closed form's log-log
    # slope and its 95% bootstrap interval must contain it (0.7020 in [0.685, 0.761] and
    # C = 0.723 measured with this seed).
    from statistics import NormalDist
    eps, c = 0.05, 0.5
    sim = attnsparse.theory.simulate(n="1024:16384", d=16, logit_c=c, eps=eps, trials=16, bootstrap=200)
    s = sim.to_dict()
    setting = s["settings"][0]
    ns = setting["n"]
    assert ns == [1024, 2048, 4096, 8192, 16384]
    nd = NormalDist()
    closed = [n * (1 - nd.cdf(math.sqrt(2 * c * math.log(n)) + nd.inv_cdf(eps))) for n in ns]
    assert setting["k_eps"][0]["closed_form"] == pytest.approx(closed, rel=1e-6)
    x = [math.log(n) for n in ns]
    y = [math.log(k) for k in closed]
    mx, my = sum(x) / len(x), sum(y) / len(y)
    slope = sum((a - mx) * (b - my) for a, b in zip(x, y)) / sum((a - mx) ** 2 for a in x)
    fit = s["fits"][0]
    assert fit["closed_form_C"] == pytest.approx(slope, abs=1e-6)
    assert abs(fit["C"] - slope) < 0.05
    assert fit["C_ci"][0] <= slope <= fit["C_ci"][1]
    # Simulated mean k_eps within 25% of the closed form at every n (20% measured at 16384).
    for got, want in zip(setting["k_eps"][0]["mean"], closed):
        assert abs(got / want - 1) < 0.25


def test_python_package_files_are_in_the_build():
    import attnsparse.analysis
    import attnsparse.theory
    here = os.path.dirname(attnsparse.__file__)
    src = os.path.join(SOURCE_DIR, "src", "python", "attnsparse")
    for name in os.listdir(src):
        if name.endswith(".py"):
            with open(os.path.join(src, name)) as a, open(os.path.join(here, name)) as b:
                assert a.read() == b.read(), name + " in the build differs from src/python/attnsparse"


def test_import_in_a_fresh_interpreter_sets_the_spin_count():
    code = "import os, attnsparse; print(os.environ.get('GOMP_SPINCOUNT'))"
    env = dict(os.environ)
    env.pop("GOMP_SPINCOUNT", None)
    env.pop("OMP_WAIT_POLICY", None)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "10000"


def test_fit_equals_cli_theory_fit_json(tmp_path):
    from conftest import BUNDLED_MODEL, reference
    sample = reference("longbench", "sample.jsonl")
    model = attnsparse.Model(BUNDLED_MODEL, threads=2)
    got = attnsparse.theory.fit(model, sample, max_tokens=256, rows_per_bin=8, bootstrap=100).to_dict()
    cli("theory", "fit", BUNDLED_MODEL, "--data", sample, "--max-tokens", "256", "--rows-per-bin", "8",
        "--bootstrap", "100", "--threads", "2", "--out", tmp_path)
    with open(tmp_path / "theory_fit.json") as f:
        want = json.load(f)
    got.pop("seconds", None)
    want.pop("seconds", None)
    assert got == want
    assert len(got["heads"]) == 16  # 4 layers x 4 heads, each with its fit
    with pytest.raises(ValueError):
        attnsparse.theory.fit(model, sample, eps=[2.0])


def test_policy_map_rules_and_cli_errors():
    pm = attnsparse.PolicyMap("L0-1:dense;L2-3H1,3:window=64;default:topk=8")
    assert pm.at(0, 2) == attnsparse.Policy("dense")
    assert pm.at(2, 1) == attnsparse.Policy("window=64") and pm.at(3, 3).spec == "window=64"
    assert pm.at(2, 0) == attnsparse.Policy("topk=8")  # no rule matches: the default
    assert attnsparse.PolicyMap(pm.spec).spec == pm.spec
    assert pickle.loads(pickle.dumps(pm)).spec == pm.spec
    assert sorted(p.spec for p in pm.used(4, 4)) == ["dense", "topk=8", "window=64"]
    pm.validate(4, 4)
    with pytest.raises(ValueError):
        pm.validate(2, 4)  # a rule names layers 2-3 of a 2-layer model
    with pytest.raises(ValueError):
        attnsparse.PolicyMap("L0:h2o=budget:64,recent:16;default:dense").validate(4, 4)  # evicting: all layers


def test_policy_mask_and_select_against_their_definitions():
    import numpy as np
    n = 40
    t, j = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    causal = j <= t
    # docs/policies.md: sink=G,window=W keeps p < G or t - p < W; dilated=w:r keeps
    # t - p = r m for m < w; strided=l keeps t - p < l or (t - p) % l == 0.
    np.testing.assert_array_equal(attnsparse.Policy("window=8").mask(n), causal & (t - j < 8))
    np.testing.assert_array_equal(attnsparse.Policy("sink=4,window=8").mask(n), causal & ((j < 4) | (t - j < 8)))
    np.testing.assert_array_equal(attnsparse.Policy("dilated=4:3").mask(n),
                                  causal & ((t - j) % 3 == 0) & ((t - j) // 3 < 4))
    np.testing.assert_array_equal(attnsparse.Policy("strided=5").mask(n), causal & ((t - j < 5) | ((t - j) % 5 == 0)))
    np.testing.assert_array_equal(attnsparse.Policy("dense").mask(n), causal)
    rng = np.random.default_rng(1)
    row = rng.dirichlet(np.full(100, 0.3)).astype(np.float32)
    order = sorted(range(100), key=lambda i: (-row[i], i))  # ties to the lower index
    np.testing.assert_array_equal(attnsparse.Policy("topk=10").select(row), sorted(order[:10]))
    top = attnsparse.Policy("topp=0.9").select(row)
    kept = sorted(order, key=lambda i: (-row[i], i))
    need = next(k for k in range(1, 101) if row[kept[:k]].astype(np.float64).sum() >= 0.9 - 1e-6)
    assert len(top) in (need, need + 1) and set(kept[:len(top)]) == set(top.tolist())
    with pytest.raises(ValueError, match="content policies"):
        attnsparse.Policy("window=8").select(row)
    with pytest.raises(ValueError, match="positional"):
        attnsparse.Policy("topk=8").mask(10)

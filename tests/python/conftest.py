"""Paths for the Python tests. ctest sets PYTHONPATH (build/python), ATTNSPARSE_BIN,
ATTNSPARSE_SHARED_DIR and ATTNSPARSE_SOURCE_DIR; run by hand, the defaults are the
checkout's build/ and ../shared."""
import json
import os
import subprocess

import pytest

SOURCE_DIR = os.environ.get("ATTNSPARSE_SOURCE_DIR",
                            os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))
BIN = os.environ.get("ATTNSPARSE_BIN", os.path.join(SOURCE_DIR, "build", "attnsparse"))
_SHARED_FROM_ENV = "ATTNSPARSE_SHARED_DIR" in os.environ
SHARED_DIR = os.environ.get("ATTNSPARSE_SHARED_DIR", os.path.join(SOURCE_DIR, "..", "shared"))
BUNDLED_MODEL = os.path.join(SOURCE_DIR, "models", "kjv-llama.gguf")


def reference(*parts):
    """A file of ../shared/reference: missing is a failure under ctest (which always gives
    the directory), a skip only when run by hand outside a checkout that has it."""
    path = os.path.join(SHARED_DIR, "reference", *parts)
    if not os.path.exists(path):
        if _SHARED_FROM_ENV:
            pytest.fail("reference file missing: " + path)
        pytest.skip("no reference data at " + path)
    return path


def cli(*args, check=True):
    """Runs build/attnsparse; returns the CompletedProcess (text)."""
    r = subprocess.run([BIN, *map(str, args)], capture_output=True, text=True)
    if check and r.returncode != 0:
        raise AssertionError("attnsparse %s failed (%d): %s" % (" ".join(map(str, args)), r.returncode, r.stderr))
    return r


def cli_json(*args):
    return json.loads(cli(*args).stdout)


@pytest.fixture(scope="session")
def bundled():
    import attnsparse
    assert os.path.exists(BUNDLED_MODEL), BUNDLED_MODEL
    return attnsparse.Model(BUNDLED_MODEL, threads=2)


@pytest.fixture(scope="session")
def ref_model():
    import attnsparse
    return attnsparse.Model(reference("models", "llama-spm-f32.gguf"), threads=2)

"""TensorFlow's start-up lines stay out of the CLI's stderr unless asked for.

Each case runs in a fresh interpreter: only the first import of TensorFlow prints them, and
this test process has imported it long ago.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

pytest.importorskip("tensorflow")

# What TensorFlow writes at start-up: CUDA probing, TF-TRT, oneDNN, the CPU-feature note, and
# absl's "before InitializeLog" banner.
NOISE = re.compile(r"cuda|TF-TRT|oneDNN|cpu_feature_guard|InitializeLog", re.IGNORECASE)

PLAIN_IMPORT = "import tensorflow"
QUIET_IMPORT = "from exactsnn.ops import import_tensorflow; tf = import_tensorflow(); import keras; tf.constant(1.0) + 1"


def _stderr(code: list[str] | str, verbose: bool = False) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "EXACTSNN_VERBOSE")}
    if verbose:
        env["EXACTSNN_VERBOSE"] = "1"
    args = ["-c", code] if isinstance(code, str) else code
    result = subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, timeout=300)
    return result.stderr


@pytest.fixture(scope="module")
def tf_is_noisy():
    """Whether TensorFlow prints anything at start-up on this machine (some builds do not)."""
    return bool(NOISE.search(_stderr(PLAIN_IMPORT)))


def test_library_import_is_quiet():
    assert not NOISE.search(_stderr(QUIET_IMPORT))


def test_verbose_environment_keeps_the_messages(tf_is_noisy):
    if not tf_is_noisy:
        pytest.skip("this TensorFlow prints nothing at start-up")
    assert NOISE.search(_stderr(QUIET_IMPORT, verbose=True))


def test_cli_error_is_one_line_without_tensorflow_noise(tmp_path, tf_is_noisy):
    missing = str(tmp_path / "missing.prototxt")
    cmd = ["-m", "exactsnn.cli", "caffe2keras", missing, missing, "-o", str(tmp_path / "out.keras")]
    lines = _stderr(cmd).splitlines()
    assert lines == [f"exactsnn: error: {missing}: no such file"]
    if tf_is_noisy:
        assert NOISE.search(_stderr(cmd + ["--verbose"]))


def test_a_failing_import_still_says_why(tmp_path):
    """A broken TensorFlow is not silenced: its output and the error reach stderr."""
    fake = tmp_path / "tensorflow"
    fake.mkdir()
    (fake / "__init__.py").write_text(
        "import os\nos.write(2, b'native loader: libfoo.so missing\\n')\nraise ImportError('broken build')\n"
    )
    code = f"import sys; sys.path.insert(0, {str(tmp_path)!r}); from exactsnn.ops import import_tensorflow; import_tensorflow()"
    err = _stderr(code)
    assert "native loader: libfoo.so missing" in err and "ImportError: broken build" in err

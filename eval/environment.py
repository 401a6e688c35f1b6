"""The software and hardware a run happened on, and the project's git state."""

from __future__ import annotations

import importlib.metadata
import platform
import subprocess
from pathlib import Path
from typing import Any, Optional

PACKAGES = ("torch", "transformers", "tokenizers", "mteb", "beir", "sentence-transformers", "numpy", "datasets")
PROJECT_ROOT = Path(__file__).resolve().parents[1]


def package_versions() -> dict[str, Optional[str]]:
    """Return the installed version of each package that can move a score, None where absent."""
    versions: dict[str, Optional[str]] = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def cpu_name() -> str:
    """Return the CPU model name from /proc/cpuinfo, or what ``platform`` reports."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def environment() -> dict[str, Any]:
    """Return Python, package versions, CUDA and the device names of this machine."""
    import torch

    cuda_available = torch.cuda.is_available()
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": package_versions(),
        "cuda": torch.version.cuda,
        "cuda_available": cuda_available,
        "gpu": torch.cuda.get_device_name(0) if cuda_available else None,
        "cpu": cpu_name(),
        "torch_threads": torch.get_num_threads(),
    }


def git_state(root: Path = PROJECT_ROOT) -> dict[str, Any]:
    """Return the commit checked out in ``root`` and whether tracked files differ from it."""

    def git(*args: str) -> Optional[str]:
        try:
            completed = subprocess.run(
                ["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10, check=True
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return completed.stdout.strip()

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": bool(status) if status is not None else None}

"""Versions, devices and data locations: what `lrfind env` prints and result.json records.

lrfind env     # paste into a bug report
"""

from __future__ import annotations

import platform
import sys
from importlib import metadata
from typing import Any

from lrfind.errors import ConfigError

PACKAGES = ("lrfind", "torch", "torchvision", "numpy", "typer", "rich", "matplotlib", "pandas")


def package_versions() -> dict[str, str | None]:
    """Installed versions read from package metadata, without importing the packages."""
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def resolve_device(name: str) -> Any:
    """The torch.device for `--device`; `auto` picks cuda, then mps, then cpu."""
    import torch

    cuda = torch.cuda.is_available()
    mps = bool(getattr(torch.backends, "mps", None)) and torch.backends.mps.is_available()
    if name == "auto":
        return torch.device("cuda" if cuda else "mps" if mps else "cpu")
    if name == "cuda" and not cuda:
        raise ConfigError(
            f"--device cuda was asked for, but torch {torch.__version__} sees no CUDA device. "
            "Use --device cpu (or auto), or install a CUDA build of torch on a GPU machine."
        )
    if name == "mps" and not mps:
        raise ConfigError(
            "--device mps was asked for, but no Apple MPS device is available. "
            "Use --device cpu (or auto)."
        )
    return torch.device(name)


def device_report() -> dict[str, Any]:
    import torch

    report: dict[str, Any] = {
        "cuda_available": torch.cuda.is_available(),
        "cuda_version": torch.version.cuda,
        "cuda_devices": [],
        "mps_available": bool(getattr(torch.backends, "mps", None))
        and torch.backends.mps.is_available(),
        "cpu_threads": torch.get_num_threads(),
        "auto_device": str(resolve_device("auto")),
    }
    if report["cuda_available"]:
        report["cuda_devices"] = [
            torch.cuda.get_device_name(index) for index in range(torch.cuda.device_count())
        ]
    return report


def describe_device(device: Any) -> str:
    import torch

    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "cpu":
        return platform.processor() or platform.machine()
    return device.type


def environment_summary(device: Any) -> dict[str, Any]:
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": package_versions(),
        "device": str(device),
        "device_name": describe_device(device),
    }

"""The manifest saved with every checkpoint: what it was trained with and how its output is formatted."""

from __future__ import annotations

import json
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

MANIFEST_FILE = "reasonkit_manifest.json"
TRACKED_PACKAGES = ["reasonkit", "torch", "transformers", "trl", "accelerate", "peft", "deepspeed", "vllm"]


def package_versions() -> dict[str, str]:
    found = {}
    for name in TRACKED_PACKAGES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            continue
    return found


def write_manifest(
    directory: str | Path, *, stage: str, objective: dict, traces: bool, think_prefilled: bool
) -> None:
    manifest = {
        "stage": stage,
        "objective": objective,
        "format": {"traces": traces, "think_prefilled": think_prefilled},
        "versions": package_versions(),
    }
    (Path(directory) / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2))


def read_manifest(directory: str | Path) -> dict | None:
    path = Path(directory) / MANIFEST_FILE
    return json.loads(path.read_text()) if path.exists() else None

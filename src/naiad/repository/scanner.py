"""Scan model repositories: ``<repository>/<model>/<version>/`` with numeric versions.

Model names are the directory names; a name must be a plain path component so it
can never point outside its repository.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from tritonclient.grpc import model_config_pb2 as mc

from naiad.errors import ModelConfigError

# Plain names only: no separators, no leading dot (hidden entries and '..').
MODEL_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")


@dataclass(frozen=True, slots=True)
class ModelLocation:
    name: str
    path: Path


def is_valid_model_name(name: str) -> bool:
    return bool(MODEL_NAME_RE.match(name)) and len(name) <= 255


def scan_repositories(repositories: list[Path]) -> tuple[list[ModelLocation], dict[str, str]]:
    """All models in ``repositories``; also the names found more than once, with why."""
    found: dict[str, ModelLocation] = {}
    duplicates: dict[str, str] = {}
    for repository in repositories:
        for entry in sorted(repository.iterdir()):
            if not entry.is_dir() or entry.name.startswith("."):
                continue
            if not is_valid_model_name(entry.name):
                duplicates[entry.name] = (
                    f"invalid model name '{entry.name}' in repository {repository}"
                )
                continue
            if entry.name in found:
                duplicates[entry.name] = (
                    f"model '{entry.name}' appears in more than one repository: "
                    f"{found[entry.name].path.parent} and {repository}"
                )
                continue
            found[entry.name] = ModelLocation(entry.name, entry.resolve())
    for name in duplicates:
        found.pop(name, None)
    return list(found.values()), duplicates


def version_dirs(model_dir: Path) -> dict[int, Path]:
    """Numeric version subdirectories by version number (others are ignored, as in Triton)."""
    versions: dict[int, Path] = {}
    for entry in model_dir.iterdir():
        if entry.is_dir() and entry.name.isdigit() and not entry.name.startswith("0"):
            versions[int(entry.name)] = entry
    return versions


def select_versions(config: mc.ModelConfig, available: dict[int, Path], source: str) -> list[int]:
    """Apply ``version_policy`` (latest N / all / specific) to the versions on disk."""
    policy = config.version_policy
    kind = policy.WhichOneof("policy_choice")
    ordered = sorted(available)
    if kind == "all":
        chosen = ordered
    elif kind == "specific":
        chosen = sorted(v for v in set(policy.specific.versions) if v in available)
    else:
        count = policy.latest.num_versions if kind == "latest" else 1
        chosen = ordered[-count:]
    if not chosen:
        raise ModelConfigError(
            f"at least one version must be available under the version policy of model "
            f"'{config.name}' ({source})"
        )
    return chosen

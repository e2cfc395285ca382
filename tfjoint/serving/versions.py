"""Model versions: the versions a base path holds, the version policy that picks the aspired
ones (TF Serving's FileSystemStoragePathSource and ServableVersionPolicy), and the
single-model config that --model_name/--model_base_path stand for.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from tensorflow_serving.config import model_server_config_pb2


def list_versions(base_path: str) -> dict[int, str]:
    """Integer-named children of base_path holding a SavedModel (partial copies are skipped)."""
    found = {}
    try:
        children = os.listdir(base_path)
    except OSError:
        return found
    for child in children:
        if not child.isdigit():
            continue
        path = os.path.join(base_path, child)
        if not os.path.isdir(path):
            continue
        if not (
            os.path.exists(os.path.join(path, "saved_model.pb"))
            or os.path.exists(os.path.join(path, "saved_model.pbtxt"))
        ):
            continue
        found[int(child)] = path
    return found


def dir_signature(path: str) -> tuple:
    """(relative path, size, mtime_ns) of every entry under path: changes when a copy completes."""
    sig = []
    for root, dirs, files in os.walk(path):
        for name in sorted(dirs + files):
            full = os.path.join(root, name)
            try:
                st = os.stat(full)
            except OSError:
                continue
            sig.append((os.path.relpath(full, path), st.st_size, st.st_mtime_ns))
    return tuple(sorted(sig))


def aspired_versions(policy: model_server_config_pb2.ModelConfig, available: Iterable[int]) -> set[int]:
    """TF Serving's ServableVersionPolicy: latest{num_versions} (default 1), all, specific{versions}."""
    versions = sorted(set(available))
    p = policy.model_version_policy
    which = p.WhichOneof("policy_choice")
    if which == "all":
        return set(versions)
    if which == "specific":
        return set(versions) & set(p.specific.versions)
    n = p.latest.num_versions if which == "latest" and p.latest.num_versions > 0 else 1
    return set(versions[-n:])


def single_model_config(name: str, base_path: str) -> model_server_config_pb2.ModelServerConfig:
    """The config TF Serving builds from --model_name/--model_base_path."""
    cfg = model_server_config_pb2.ModelServerConfig()
    mc = cfg.model_config_list.config.add(name=name, base_path=base_path, model_platform="tensorflow")
    mc.model_version_policy.latest.num_versions = 1
    return cfg


__all__ = ["aspired_versions", "dir_signature", "list_versions", "single_model_config"]

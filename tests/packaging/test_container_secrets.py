"""docs/deployment.md's container secret recipes work for the image's non-root user.

A secret file the agent cannot read stops it (exit 2), and the classic mistake is a bind-mounted
`root:root 0600` file. Each recipe in the docs (podman and swarm `--secret` options, the host files a
compose file bind-mounts, Kubernetes Secret volumes) is read here and checked against the user the
Containerfile really declares: the right uid/gid, and a mode that user can read.
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path
from typing import Any

import pytest

yaml = pytest.importorskip("yaml", reason="PyYAML is not installed (it comes with moto's test deps)")

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "deployment.md").read_text()
OWNERS = {"root": 0}


def _image_user() -> tuple[int, int]:
    """The uid and gid the image runs as, checked against the user and group it creates."""
    text = (ROOT / "packaging" / "Containerfile").read_text()
    found = re.search(r"^USER (\d+):(\d+)$", text, re.M)
    assert found, "the Containerfile sets no numeric USER uid:gid"
    uid, gid = int(found[1]), int(found[2])
    assert re.search(rf"useradd --uid {uid} --gid {gid}\b", text)
    assert re.search(rf"groupadd --gid {gid}\b", text)
    return uid, gid


UID, GID = _image_user()


def readable(mode: int, owner: int, group: int, uid: int = UID, gid: int = GID) -> bool:
    """Whether uid/gid may read a file of this owner, group and mode (POSIX permission bits)."""
    if uid == owner:
        return bool(mode & 0o400)
    if gid == group:
        return bool(mode & 0o040)
    return bool(mode & 0o004)


def _blocks(lang: str, text: str = DOC) -> list[str]:
    return [textwrap.dedent(b) for b in re.findall(rf"^ *```{lang}\n(.*?)^ *```", text, re.M | re.S)]


def _section(title: str) -> str:
    start = DOC.index(title)
    end = DOC.find("\n## ", start)
    return DOC[start:end if end > 0 else None]


def test_the_readable_rule() -> None:
    assert not readable(0o600, 0, 0)  # the bind-mounted root file that fails today
    assert readable(0o440, 0, GID) and readable(0o400, UID, GID) and not readable(0o400, 0, GID)


def test_podman_and_swarm_secrets_name_the_image_user_and_a_readable_mode() -> None:
    options = [m for block in _blocks("sh") for m in re.findall(r"--secret[= ](\S+)", block)]
    assert len(options) >= 4, options  # the Run recipe (2), podman and swarm in the secrets section
    for opt in options:
        fields = dict(kv.split("=", 1) for kv in opt.split(",") if "=" in kv)
        assert {"uid", "gid", "mode"} <= set(fields), f"{opt}: no uid/gid/mode, the file would be root's"
        assert (int(fields["uid"]), int(fields["gid"])) == (UID, GID), opt
        assert readable(int(fields["mode"], 8), int(fields["uid"]), int(fields["gid"])), opt


def test_compose_host_files_are_readable_by_the_image_user() -> None:
    section = _section("### Secrets the agent's user can read")
    installs = [line for block in _blocks("sh", section) for line in block.splitlines()
                if line.startswith("install ")]
    assert installs
    dirs: list[str] = []
    for line in installs:
        owner, group, mode = (re.search(rf" -{flag} (\S+)", line) for flag in "ogm")
        assert owner and group and mode, line
        uid, gid = (OWNERS.get(x) if not x.isdigit() else int(x) for x in (owner[1], group[1]))
        assert uid is not None and gid is not None, line
        assert readable(int(mode[1], 8), uid, gid), line
        if " -d " in line:
            assert int(mode[1], 8) & (0o100 if uid == UID else 0o010 if gid == GID else 0o001), line
            dirs.append(line.split()[-1])
    (compose,) = [yaml.safe_load(b) for b in _blocks("yaml", section) if "services:" in b]
    for name, service in compose["services"].items():
        assert str(service.get("user", f"{UID}:{GID}")) == f"{UID}:{GID}", name
        assert service["secrets"]
    for secret in compose["secrets"].values():
        assert Path(secret["file"]).parent.name in dirs, secret  # a file the install lines made readable


def _pod_specs(doc: Any) -> list[dict[str, Any]]:
    if isinstance(doc, dict):
        if "volumes" in doc and "securityContext" in doc:
            return [doc]
        return [p for v in doc.values() for p in _pod_specs(v)]
    if isinstance(doc, list):
        return [p for v in doc for p in _pod_specs(v)]
    return []


def _kubernetes_specs() -> list[dict[str, Any]]:
    manifests = [*_blocks("yaml", _section("## 3. Kubernetes")),
                 (ROOT / "packaging" / "kubernetes.yaml").read_text()]
    return [p for text in manifests for doc in yaml.safe_load_all(text) for p in _pod_specs(doc)]


def test_kubernetes_secret_volumes_are_readable_through_fs_group() -> None:
    specs = _kubernetes_specs()
    checked = 0
    for spec in specs:
        ctx = spec["securityContext"]
        assert (ctx["runAsUser"], ctx["runAsGroup"], ctx.get("fsGroup")) == (UID, GID, GID), ctx
        for volume in spec["volumes"]:
            source = volume.get("secret") or volume.get("projected")
            if source is None:
                continue
            mode = source.get("defaultMode", 0o644)
            # Secret files belong to root; fsGroup makes their group the pod's group.
            assert readable(mode, 0, ctx["fsGroup"]), f"{volume['name']}: mode {mode:o}"
            checked += 1
    assert checked >= 3  # the docs' projected volume and both Deployments of packaging/kubernetes.yaml

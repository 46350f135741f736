"""The Kubernetes example and its kustomize base are valid against the Kubernetes API schemas
(kubernetes-validate ships them, so the check needs no cluster and no network)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

yaml = pytest.importorskip("yaml", reason="PyYAML is not installed (it comes with moto's test deps)")
kubernetes_validate = pytest.importorskip("kubernetes_validate", reason="kubernetes-validate is a test dependency")

PACKAGING = Path(__file__).resolve().parents[2] / "packaging"


def _documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


@pytest.mark.parametrize("doc", _documents(PACKAGING / "kubernetes.yaml"), ids=lambda d: f"{d['kind']}")
def test_every_object_is_valid_against_the_api_schema(doc: dict[str, Any]) -> None:
    kubernetes_validate.validate(doc, kubernetes_validate.latest_version(), strict=True)


def test_an_invalid_object_is_refused() -> None:
    """The check can fail: a Deployment with a misspelt field is an error under strict validation."""
    deployment = next(d for d in _documents(PACKAGING / "kubernetes.yaml") if d["kind"] == "Deployment")
    broken = {**deployment, "spec": {**deployment["spec"], "replica": 1}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, kubernetes_validate.latest_version(), strict=True)


def test_the_kustomize_base_lists_the_example() -> None:
    (base,) = _documents(PACKAGING / "kustomization.yaml")
    assert base["apiVersion"] == "kustomize.config.k8s.io/v1beta1" and base["kind"] == "Kustomization"
    assert set(base) <= {"apiVersion", "kind", "resources", "labels"}, "a field kustomize would not read here"
    for resource in base["resources"]:
        assert (PACKAGING / resource).is_file(), resource  # kustomize reads files in or below its directory
        assert "/" not in resource and ".." not in resource

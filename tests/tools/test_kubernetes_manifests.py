"""deploy/kubernetes: every manifest is valid for the Kubernetes API (kubernetes-validate's
bundled schemas, strict: no field the API does not know), and the fleet there keeps what must
not change (docs/scaling.md): Redis fsyncs every write, both tiers run on Redis with the
key-encryption key from a Secret, non-root, with read-only root file systems."""

from __future__ import annotations

from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from lab_common.contract import HEALTH

MANIFESTS = Path(__file__).resolve().parents[2] / "deploy" / "kubernetes"
#: The oldest Kubernetes release still supported upstream when this was written, and the newest
#: the validator knows.
VERSIONS = ("1.32.0", kubernetes_validate.utils.latest_version())


def documents() -> list[tuple[str, dict]]:
    found = []
    for path in sorted(MANIFESTS.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            if document:
                found.append(
                    (f"{path.name}:{document['kind']}/{document['metadata']['name']}", document)
                )
    return found


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize(("name", "document"), documents(), ids=[n for n, _ in documents()])
def test_each_manifest_is_valid_for_the_kubernetes_api(name, document, version):
    kubernetes_validate.validate(document, version, strict=True)


def by_kind(kind: str) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for _, d in documents() if d["kind"] == kind}


def test_redis_fsyncs_every_write_and_the_tiers_use_it_with_the_state_key():
    (redis,) = by_kind("StatefulSet").values()
    args = redis["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--appendfsync") + 1] == "always"
    settings = by_kind("ConfigMap")["tls-lab-settings"]["data"]
    assert settings["STATE_BACKEND"] == "redis" and settings["STATE_KEY_FILE"]
    for name, deployment in by_kind("Deployment").items():
        pod = deployment["spec"]["template"]["spec"]
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert volumes["state-key"]["secret"]["secretName"] == "tls-lab-state-key", name
        assert pod["securityContext"]["runAsNonRoot"] is True
        for container in pod["containers"]:
            assert container["securityContext"]["readOnlyRootFilesystem"] is True
            assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
            assert container["readinessProbe"]["httpGet"]["path"] == HEALTH

"""`meshctl register --workload-group`: a WorkloadGroup's template as a registration's
namespace, service account and labels (on the wire in tests/e2e/test_workload_entry.py)."""

from __future__ import annotations

import subprocess

import pytest

from api.catalog import CatalogError
from api.networking.workload_entry import WorkloadGroupSpec
from meshctl.procs import bin_path
from meshctl.registration import from_group


def group(**spec: object) -> WorkloadGroupSpec:
    return WorkloadGroupSpec.model_validate(spec)


def test_labels_workload_over_group_metadata_over_template() -> None:
    spec = group(
        metadata={"labels": {"app": "vm", "tier": "group"}},
        template={
            "labels": {"app": "template", "tier": "t", "version": "v1"},
            "serviceAccount": "vm",
        },
    )
    got = from_group(spec, "default", {"version": "v2"})
    assert got.labels == {"app": "vm", "tier": "group", "version": "v2"}
    assert got.service_account == "vm"


def test_service_account_is_the_template_s_which_the_workload_may_not_contradict() -> None:
    spec = group(template={"serviceAccount": "vm"})
    assert from_group(spec, "vm", {}).service_account == "vm"
    with pytest.raises(CatalogError, match="the WorkloadGroup's template says 'vm'"):
        from_group(spec, "other", {})
    # A template without one leaves the workload's own.
    assert from_group(group(template={}), "mine", {}).service_account == "mine"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["-n", "shop", "--workload-group", "vms/legacy"], "the WorkloadGroup is in 'vms'"),
        (["--workload-group", "vms/legacy"], "consul at 127.0.0.1:1"),
    ],
)
def test_errors_are_one_line(extra: list[str], message: str) -> None:
    args = ["register", "--consul-addr", "127.0.0.1:1", "--service", "legacy", "--id", "x"]
    args += ["--address", "127.0.0.1", "--port", "80", *extra]
    out = subprocess.run([bin_path("meshctl"), *args], capture_output=True, text=True, timeout=60)
    assert out.returncode != 0
    assert message in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr

"""Which resources `quarantine.admit` leaves out, and how many builds that takes."""

from __future__ import annotations

import dataclasses

import pytest

from api.resources import Resource
from pilot import quarantine
from tests.pilot.test_conflicts import resources, service_entry


def _entries(n: int, first_version: int = 1) -> list[Resource]:
    text = "".join(service_entry(f"e{i}", "default", f"e{i}.example.com") for i in range(n))
    out = resources(text, *range(1, n + 1))
    return [
        dataclasses.replace(r, resource_version=str(first_version + i)) for i, r in enumerate(out)
    ]


class Builder:
    """Builds a sorted tuple of names; raises when any of `bad` is in."""

    def __init__(self, bad: set[str]) -> None:
        self.bad, self.calls = bad, 0

    def __call__(self, config: list[Resource]) -> tuple[str, ...]:
        self.calls += 1
        names = tuple(r.name for r in config)
        if self.bad & set(names):
            raise ValueError(f"cannot build {sorted(self.bad & set(names))}")
        return names


def test_a_clean_build_is_one_build() -> None:
    config = _entries(5)
    build = Builder(set())
    got = quarantine.admit(build, config, [])
    assert got.built == ("e0", "e1", "e2", "e3", "e4") and not got.left_out
    assert build.calls == 1


def test_only_changed_resources_are_suspects_and_culprits_are_found_in_few_builds() -> None:
    old = _entries(40)
    edited = [
        dataclasses.replace(r, resource_version="999") if r.name in {"e3", "e17", "e30"} else r
        for r in old
    ]
    build = Builder({"e17", "e30"})
    got = quarantine.admit(build, edited, old)
    assert sorted(r.name for r, _ in got.left_out) == ["e17", "e30"]
    assert all("cannot build" in why for _, why in got.left_out)
    # Every other resource is in, in the original order, and built is of exactly that.
    assert got.built == tuple(r.name for r in got.config)
    assert [r.name for r in got.config] == [r.name for r in edited if r.name not in {"e17", "e30"}]
    # full + unchanged + a bisection of 3 suspects: far fewer than one build per resource.
    assert build.calls <= 8


def test_resources_never_stored_are_compared_by_identity() -> None:
    old = [dataclasses.replace(r, resource_version=None) for r in _entries(4)]
    new = [*old, *[dataclasses.replace(r, resource_version=None) for r in _entries(1)]]
    new[-1] = dataclasses.replace(new[-1], name="fresh")
    build = Builder({"fresh"})
    got = quarantine.admit(build, new, old)
    assert [r.name for r, _ in got.left_out] == ["fresh"]
    assert got.built == ("e0", "e1", "e2", "e3")


def test_when_the_unchanged_config_fails_too_the_first_error_is_raised() -> None:
    config = _entries(3)

    def always(_: list[Resource]) -> None:
        raise RuntimeError("catalog trouble")

    with pytest.raises(RuntimeError, match="catalog trouble"):
        quarantine.admit(always, config, config[:2])

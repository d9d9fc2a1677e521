"""Config that breaks the snapshot build is left out; the rest of the mesh is pushed.

Validation should refuse anything Pilot cannot translate, so a build that raises is
a bug. Its cause is still someone's resource, and an endpoint change elsewhere must
not wait for that resource to be fixed. When the build raises, the resources that
changed since the last good build are the suspects: the unchanged ones are built
alone, then the suspects are admitted in halves (a group that builds goes in whole,
one that raises is split), so one culprit among k suspects costs about 2·log2(k)
extra builds. Only when even the unchanged config cannot be built (the catalog, or
a bug that does not depend on config) does the build fail as before.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from api.resources import Resource

__all__ = ["Admitted", "admit"]

T = TypeVar("T")


@dataclass(frozen=True)
class Admitted(Generic[T]):
    built: T
    config: list[Resource]  # what `built` was built from
    left_out: list[tuple[Resource, str]]  # each resource left out, and what it raised


def _revision(r: Resource) -> object:
    """The same for a resource and its unchanged copy: stored config is read anew on
    every change, so its Consul ModifyIndex says what is unchanged; config that was
    never stored (tests, files) is compared by identity (`last_good` keeps it alive)."""
    return (r.key, r.resource_version) if r.resource_version is not None else id(r)


def admit(
    build: Callable[[list[Resource]], T],
    config: Sequence[Resource],
    last_good: Sequence[Resource],
) -> Admitted[T]:
    """`build(config)`, or, when that raises, the build of the most of `config` that
    builds; raises what `build` raised when the config unchanged since `last_good`
    cannot be built either."""
    try:
        return Admitted(build(list(config)), list(config), [])
    except Exception as err:
        first = err
    position = {id(r): i for i, r in enumerate(config)}

    def in_order(resources: list[Resource]) -> list[Resource]:
        return sorted(resources, key=lambda r: position[id(r)])

    unchanged = {_revision(r) for r in last_good}
    accepted = [r for r in config if _revision(r) in unchanged]
    suspects = [r for r in config if _revision(r) not in unchanged]
    try:
        built = build(accepted)
    except Exception:
        raise first from None
    left_out: list[tuple[Resource, str]] = []

    def try_group(group: list[Resource]) -> None:
        nonlocal built
        try:
            built = build(in_order(accepted + group))
        except Exception as err:
            if len(group) == 1:
                left_out.append((group[0], f"{type(err).__name__}: {err}"))
                return
            half = len(group) // 2
            try_group(group[:half])
            try_group(group[half:])
            return
        accepted.extend(group)

    if suspects:
        try_group(suspects)
    return Admitted(built, in_order(accepted), left_out)

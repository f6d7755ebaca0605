"""A probe's workload at a load (loadkit/capacity/scale.py): it runs the load
its label says."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from loadkit.capacity.scale import apportion, at_load, load_of
from loadkit.errors import InputError
from loadkit.workload.arrival_specs import Closed
from loadkit.workload.loader import LoadedWorkload, load_workload


def loaded(folder: Path, **spec: Any) -> LoadedWorkload:
    path = folder / "w.yaml"
    path.write_text(yaml.safe_dump({"name": "w", "target": "http://127.0.0.1:9",
                                    "scenarios": [{"name": "a", "kind": "http", "path": "/"}],
                                    **spec}))
    return load_workload(path)


def users(w: LoadedWorkload) -> dict[str, int]:
    """Users per phase, every tenant's together."""
    wl = w.workload
    return {p.name: sum(s.concurrency for t in wl.all_tenants
                        if isinstance(s := wl.arrival_for(t, p), Closed))
            for p in wl.phase_list}


def test_one_loop_over_phases_keeps_their_ratio(tmp_path: Path) -> None:
    """Phases of 4 then 8 users: at 4 the second stays 8 (it ran 4 once), at
    6 it is 12."""
    w = loaded(tmp_path, phases=[
        {"name": "low", "duration": 5, "arrival": {"process": "closed", "concurrency": 4}},
        {"name": "high", "duration": 5, "arrival": {"process": "closed", "concurrency": 8}}])
    assert load_of(w) == 4
    assert users(at_load(w, 4)) == {"low": 4, "high": 8}
    assert users(at_load(w, 6)) == {"low": 6, "high": 12}


@pytest.mark.parametrize("value", [3, 4, 5, 7, 10])
def test_tenants_share_exactly_the_users_asked(tmp_path: Path, value: int) -> None:
    """Three tenants of 1 user each: a probe labelled 4 ran 3, 5 ran 6."""
    w = loaded(tmp_path, duration=5, tenants=[
        {"name": n, "arrival": {"process": "closed", "concurrency": 1}} for n in "xyz"])
    assert users(at_load(w, value)) == {"measure": value}


def test_apportion_gives_one_each_then_the_rest_in_proportion() -> None:
    assert apportion(10, {"a": 3, "b": 1}) == {"a": 7, "b": 3}
    assert apportion(4, {"a": 1, "b": 1, "c": 1}) == {"a": 2, "b": 1, "c": 1}
    assert sum(apportion(7, {"a": 5, "b": 3, "c": 1}).values()) == 7
    # Five small loops beside a big one: the small ones' one each is not on top.
    weights = {**{f"s{i}": 1 for i in range(5)}, "big": 1000}
    for total in range(6, 21):
        share = apportion(total, weights)
        assert sum(share.values()) == total and min(share.values()) >= 1
    with pytest.raises(ValueError):
        apportion(2, {"a": 1, "b": 1, "c": 1})


def test_fewer_users_than_loops_is_bad_input(tmp_path: Path) -> None:
    w = loaded(tmp_path, duration=5, tenants=[
        {"name": n, "arrival": {"process": "closed", "concurrency": 1}} for n in "xyz"])
    with pytest.raises(InputError, match="--min 3 at least"):
        at_load(w, 2)

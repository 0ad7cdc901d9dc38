"""egressgw.manifests: files, directories (recursive, sorted), unreadable paths."""

from __future__ import annotations

from pathlib import Path

import pytest

from egressgw.manifests import load, manifest_files, read_resources
from egressgw.model import ManifestError

NS = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {name}\n"


def test_directories_are_read_recursively_in_sorted_order(tmp_path: Path) -> None:
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "z.yml").write_text(NS.format(name="three"))
    (tmp_path / "a.json").write_text(
        '{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "one"}}'
    )
    (tmp_path / "a.yaml").write_text(NS.format(name="two"))
    (tmp_path / "notes.txt").write_text("not a manifest")

    names = [r.metadata.name for r in read_resources([tmp_path])]

    assert names == ["one", "two", "three"]
    assert manifest_files(tmp_path / "a.yaml") == [tmp_path / "a.yaml"]


def test_problems_from_several_files_are_reported_together(tmp_path: Path) -> None:
    (tmp_path / "1.yaml").write_text(NS.format(name="Bad_1"))
    (tmp_path / "2.yaml").write_text(NS.format(name="ok") + "---\n" + NS.format(name="Bad_2"))

    with pytest.raises(ManifestError) as caught:
        read_resources([tmp_path])

    assert [(p.source, p.line, p.field) for p in caught.value.problems] == [
        (str(tmp_path / "1.yaml"), 4, "metadata.name"),
        (str(tmp_path / "2.yaml"), 9, "metadata.name"),
    ]


def test_missing_file_and_empty_directory_are_problems(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()

    with pytest.raises(ManifestError) as caught:
        load([tmp_path / "missing.yaml", tmp_path / "empty"])

    messages = [str(p) for p in caught.value.problems]
    assert messages == [
        f"{tmp_path / 'empty'}: cannot read: no *.yaml, *.yml or *.json files in directory",
        f"{tmp_path / 'missing.yaml'}: cannot read: No such file or directory",
    ]


def test_load_checks_references_across_files(tmp_path: Path) -> None:
    (tmp_path / "gw.yaml").write_text(
        "apiVersion: operator.tigera.io/v1\nkind: EgressGateway\nmetadata:\n  name: g\n"
        "spec:\n  ipPools:\n  - name: p\n"
    )
    with pytest.raises(
        ManifestError, match=r"gw.yaml:7: EgressGateway/default/g: spec.ipPools\[0\].name"
    ):
        load([tmp_path])
    (tmp_path / "pool.yaml").write_text(
        "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata:\n  name: p\nspec:\n  cidr: 10.9.0.0/24\n"
    )
    assert [p.metadata.name for p in load([tmp_path]).ip_pools] == ["p"]

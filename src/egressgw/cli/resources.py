"""`egressgw apply | annotate | get` against the running lab's store, with kubectl's syntax.

    egressgw apply -f examples/aws-public-ip/policy.yaml
    egressgw annotate pod netshoot --overwrite egress.projectcalico.org/selector="egress-gateway == 'egw-1'"
    egressgw annotate namespace default egress.projectcalico.org/egressGatewayPolicy-
    egressgw get pods -o wide

The store is the lab's etcd (found from the lab's state; `--lab` picks one of several).
`apply` rewrites policy destinations that the lab's internet hosts stand in for, as `lab up`
does, and refuses a batch that would leave the store inconsistent. Parses, calls the
library, renders; the library never prints.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
import yaml
from rich.console import Console
from rich.table import Table

from egressgw import manifests
from egressgw.calc.gateways import ELASTIC_IP_ANNOTATION, GATEWAY_ANNOTATION, ZONE_LABEL
from egressgw.lab import running as lab_running
from egressgw.lab import scenarios
from egressgw.model import ManifestError, Node, Pod, Resource, ResourceSet
from egressgw.model.parsing import KINDS, to_dict
from egressgw.store import MAX_TXN_OPS
from egressgw.store.resources import ResourceStore

T = TypeVar("T")
LabOption = Annotated[
    str | None, typer.Option("--lab", help="The lab's prefix (default: the only one running).")
]
_err = Console(stderr=True, highlight=False)


class Output(StrEnum):
    TABLE = "table"
    WIDE = "wide"
    JSON = "json"
    YAML = "yaml"


def _aliases() -> dict[str, str]:
    """kubectl-style names of each kind: `pod`, `pods`, `po`, `egressgatewaypolicies`..."""
    found: dict[str, str] = {}
    for kind in KINDS:
        low = kind.lower()
        found |= {low: kind, low + ("es" if low.endswith("s") else "s"): kind}
        if low.endswith("y"):
            found[low[:-1] + "ies"] = kind
    return found | {"po": "Pod", "ns": "Namespace", "no": "Node", "egw": "EgressGateway"}


_KINDS = _aliases()


def _fail(message: str, code: int = 1) -> typer.Exit:
    _err.print(f"error: {message}", markup=False)
    return typer.Exit(code)


def _kind(name: str) -> str:
    kind = _KINDS.get(name.lower())
    if kind is None:
        raise _fail(f'the server doesn\'t have a resource type "{name}"')
    return kind


def _with_store(lab: str | None, work: Callable[[ResourceStore[Resource]], Awaitable[T]]) -> T:
    """Run `work` against the lab's store."""
    try:
        handle = lab_running.attach(lab)
    except LookupError as err:
        raise _fail(str(err)) from None
    return lab_running.with_store(handle, work, timeout=5.0)


# --- apply ----------------------------------------------------------------------------------


def _keep_binding(new: Resource, old: Resource | None) -> Resource:
    """A re-applied Pod keeps the node and address it has (kubectl never sends status)."""
    if not (isinstance(new, Pod) and isinstance(old, Pod)) or new.spec.node_name or new.ip:
        return new
    return new.model_copy(
        update={
            "spec": new.spec.model_copy(update={"node_name": old.spec.node_name}),
            "status": old.status,
        }
    )


async def _apply(res: ResourceStore[Resource], objects: Sequence[Resource]) -> list[str]:
    existing, _ = await res.list_all()
    by_key = {res.key_of(r): r for r in existing}
    objects = [_keep_binding(o, by_key.get(res.key_of(o))) for o in objects]
    merged = {**by_key, **{res.key_of(o): o for o in objects}}
    ResourceSet.build(merged.values())  # raises ManifestError for an inconsistent store
    for i in range(0, len(objects), MAX_TXN_OPS):
        await res.apply(objects[i : i + MAX_TXN_OPS])
    return [_verb(o, by_key.get(res.key_of(o))) for o in objects]


def _verb(new: Resource, old: Resource | None) -> str:
    name = f"{new.kind.lower()}/{new.metadata.name}"
    if old is None:
        return f"{name} created"
    same = to_dict(
        old.model_copy(
            update={"metadata": old.metadata.model_copy(update={"resource_version": None})}
        )
    ) == to_dict(new)
    return f"{name} {'unchanged' if same else 'configured'}"


def apply(
    filename: Annotated[
        list[Path], typer.Option("-f", "--filename", help="File, directory or -; repeatable.")
    ],
    lab: LabOption = None,
) -> None:
    """Create or replace the objects in the manifests, in one transaction."""
    try:
        objects = manifests.read_resources(filename)
        hosts = lab_running.attach(lab).topology().internet_hosts
        rewritten, rewrites = scenarios.rewrite_destinations(objects, hosts)
        lines = _with_store(lab, lambda res: _apply(res, rewritten))
    except ManifestError as err:
        for problem in err.problems:
            _err.print(str(problem), markup=False)
        raise typer.Exit(1) from None
    except LookupError as err:
        raise _fail(str(err)) from None
    for rewrite in rewrites:
        _err.print(f"[dim]stand-in: {rewrite}[/dim]")
    for line in lines:
        typer.echo(line)


# --- annotate -------------------------------------------------------------------------------


def _changes(items: Sequence[str]) -> tuple[dict[str, str], list[str]]:
    """kubectl's `key=value` (set) and `key-` (remove)."""
    set_: dict[str, str] = {}
    remove: list[str] = []
    for item in items:
        key, eq, value = item.partition("=")
        if eq and key:
            set_[key] = value
        elif item.endswith("-") and len(item) > 1:
            remove.append(item[:-1])
        else:
            raise _fail(f"invalid annotation {item!r}: expected key=value or key-", 2)
    return set_, remove


def annotate(
    kind: Annotated[str, typer.Argument(help="pod or namespace (or any kind).")],
    name: Annotated[str, typer.Argument(help="The object's name.")],
    changes: Annotated[list[str], typer.Argument(help="key=value to set, key- to remove.")],
    namespace: Annotated[str, typer.Option("-n", "--namespace")] = "default",
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace existing values.")
    ] = False,
    lab: LabOption = None,
) -> None:
    """Set or remove annotations of one object, as `kubectl annotate` does."""
    canonical = _kind(kind)
    key = (canonical, namespace if KINDS[canonical].namespaced else None, name)
    set_, remove = _changes(changes)

    async def work(res: ResourceStore[Resource]) -> None:
        current = await res.get(key)
        if current is None:
            raise _fail(f'{kind} "{name}" not found')
        clash = [k for k, v in set_.items() if current.metadata.annotations.get(k, v) != v]
        if clash and not overwrite:
            raise _fail(
                f"--overwrite is false but found the following declared annotation(s): {', '.join(clash)}"
            )
        await res.patch_annotations(key, set_, remove)

    _with_store(lab, work)
    typer.echo(f"{canonical.lower()}/{name} annotated")


# --- get ------------------------------------------------------------------------------------


def _wide(r: Resource) -> list[str]:
    if isinstance(r, Pod):
        notes = r.metadata.annotations
        extra = [notes.get(GATEWAY_ANNOTATION, ""), notes.get(ELASTIC_IP_ANNOTATION, "")]
        return [str(r.ip or ""), r.spec.node_name or "", *extra]
    if isinstance(r, Node):
        cidr = r.spec.pod_cidr
        return [str(r.internal_ip or ""), r.metadata.labels.get(ZONE_LABEL, ""), str(cidr or "")]
    return []


_WIDE = {
    "Pod": ["IP", "NODE", "GATEWAY", "ELASTIC-IP"],
    "Node": ["INTERNAL-IP", "ZONE", "POD-CIDR"],
}


def _table(kind: str, found: Sequence[Resource], all_namespaces: bool, wide: bool) -> Table:
    table = Table(box=None, header_style="bold")
    namespaced = KINDS[kind].namespaced and all_namespaces
    columns = ["NAMESPACE"] * namespaced + ["NAME"] + (_WIDE.get(kind, []) if wide else [])
    for column in columns:
        table.add_column(column)
    for r in found:
        row = [r.metadata.namespace or ""] * namespaced + [r.metadata.name]
        table.add_row(*row, *(_wide(r) if wide else []))
    return table


def _document(found: Sequence[Resource], single: bool) -> Any:
    items = [to_dict(r) for r in found]
    return items[0] if single else {"apiVersion": "v1", "kind": "List", "items": items}


def get(
    kind: Annotated[str, typer.Argument(help="pods, namespaces, nodes, egressgateways, ...")],
    name: Annotated[str | None, typer.Argument(help="One object's name.")] = None,
    namespace: Annotated[str, typer.Option("-n", "--namespace")] = "default",
    all_namespaces: Annotated[bool, typer.Option("-A", "--all-namespaces")] = False,
    output: Annotated[Output, typer.Option("-o", "--output")] = Output.TABLE,
    lab: LabOption = None,
) -> None:
    """List objects of a kind (or show one) from the lab's store."""
    canonical = _kind(kind)
    scoped = KINDS[canonical].namespaced and not all_namespaces
    found = [
        r
        for r in _with_store(lab, lambda res: res.list_all(canonical))[0]
        if (not scoped or r.metadata.namespace == namespace)
        and (name is None or r.metadata.name == name)
    ]
    if name is not None and not found:
        raise _fail(f'{kind} "{name}" not found')
    if output is Output.JSON:
        typer.echo(json.dumps(_document(found, name is not None), indent=2))
    elif output is Output.YAML:
        typer.echo(yaml.safe_dump(_document(found, name is not None), sort_keys=False), nl=False)
    elif not found:
        _err.print("No resources found.")
    else:
        Console(highlight=False).print(
            _table(canonical, found, all_namespaces, output is Output.WIDE)
        )

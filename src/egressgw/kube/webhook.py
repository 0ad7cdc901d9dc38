"""The validating admission webhook's decision: an AdmissionReview in, its answer out.

`review(body, known)` takes a Kubernetes `admission.k8s.io/v1` AdmissionReview (decoded
JSON) and the objects the controller currently sees (None before it has read them), and
returns the AdmissionReview response. It judges with egressgw's own model, the same code
as `egressgw validate` (`model.parsing.from_dict` for one object, `model.references` across
objects), so the rules live in one place:

- refused (`allowed: false`, status 422, one `Kind/name: field: message` per problem): what
  one object's validation finds that the CRD schema cannot (an unparsable Calico selector,
  above all), and an IPPool overlapping another IPPool (Calico's API server refuses it too;
  whichever pool comes second is at fault, so the order of creation does not matter);
- warned (allowed, with AdmissionReview `warnings`, which kubectl prints): references to
  other objects: an EgressGateway's `ipPools` (missing pool, CIDR mismatch, `nativeIP`
  without `awsSubnetID`) and a BGPPeer's `filters`. `kubectl apply -f dir/` creates objects
  in file order, so a gateway may rightly arrive before its pool; the controller's
  `Degraded` status stays the enforcement;
- allowed untouched: DELETE (and any operation but CREATE/UPDATE), kinds that are not ours
  (Calico's own `crd.projectcalico.org` objects included), objects being deleted (so
  finalizers can always be removed);
- ratcheting, as Kubernetes does for CRD rules: an UPDATE is refused only for problems the
  old object did not already have (those become warnings), so objects stored before the
  webhook existed can still be relabelled or fixed step by step.

A body it cannot read is refused with status 400 and a message saying why. Pure: no I/O.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from egressgw.kube import api
from egressgw.model import IPPool, ManifestError, Problem, Resource
from egressgw.model.parsing import KINDS, from_dict
from egressgw.model.references import cross_object_problems

Obj = dict[str, Any]
REVIEW_API_VERSION = "admission.k8s.io/v1"
SOURCE = "<admission>"
OURS = frozenset((r.group, r.version, r.kind) for r in api.OUR_KINDS)
REFUSED_ACROSS = frozenset({"IPPool"})
"""Kinds whose cross-object problems refuse (pool overlaps); for every other kind they warn."""
NOT_SYNCED = (
    "egressgw has not read the cluster's IPPools and BGPFilters yet: checks against other"
    " objects were skipped"
)


@dataclass(frozen=True)
class Verdict:
    """What to answer: allowed unless something is refused; warnings either way."""

    refused: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    code: int = 422
    reason: str = "Invalid"

    @property
    def allowed(self) -> bool:
        return not self.refused


class Unreadable(ValueError):
    """The body is not an AdmissionReview request this webhook understands."""


def review(body: Any, known: Iterable[Resource] | None) -> Obj:
    """The AdmissionReview response to `body`, judged against the `known` objects."""
    uid = uid_of(body)
    try:
        verdict = judge(_request(body), known)
    except Unreadable as err:
        message = f"egressgw webhook: cannot read the AdmissionReview: {err}"
        verdict = Verdict(refused=(message,), code=400, reason="BadRequest")
    return response(uid, verdict)


def response(uid: str, verdict: Verdict) -> Obj:
    answer: Obj = {"uid": uid, "allowed": verdict.allowed}
    if not verdict.allowed:
        answer["status"] = {"status": "Failure", "code": verdict.code, "reason": verdict.reason,
                            "message": "; ".join(verdict.refused)}
    if verdict.warnings:
        answer["warnings"] = list(verdict.warnings)
    return {"apiVersion": REVIEW_API_VERSION, "kind": "AdmissionReview", "response": answer}


def judge(request: Mapping[str, Any], known: Iterable[Resource] | None) -> Verdict:
    """The verdict on one AdmissionReview `request` (the body's `request` field)."""
    operation = request.get("operation")
    if operation not in ("CREATE", "UPDATE") or not _ours(request.get("kind")):
        return Verdict()
    new = _object(request, "object")
    meta = new.get("metadata")
    if isinstance(meta, Mapping) and meta.get("deletionTimestamp"):
        return Verdict()
    context = None if known is None else list(known)
    refused, warned = _findings(new, request, context)
    old = request.get("oldObject")
    if operation == "UPDATE" and refused and isinstance(old, Mapping):
        before = {describe(p) for p in _findings(old, request, context)[0]}
        warned += [f"{describe(p)} (allowed: it was already so)" for p in refused
                   if describe(p) in before]
        refused = [p for p in refused if describe(p) not in before]
    return Verdict(tuple(describe(p) for p in refused), tuple(warned))


def describe(problem: Problem) -> str:
    """`Kind[/namespace]/name: field: message`, as users see it in kubectl's output."""
    who = "/".join(p for p in (problem.kind, problem.namespace, problem.name) if p)
    return ": ".join(p for p in (who, problem.field, problem.message) if p)


def _findings(
    obj: Mapping[str, Any], request: Mapping[str, Any], known: list[Resource] | None
) -> tuple[list[Problem], list[str]]:
    """(problems that refuse, warnings) for one object."""
    try:
        res = from_dict(_normalised(obj, request), source=SOURCE)
    except ManifestError as err:
        return list(err.problems), []
    if known is None:
        return [], [NOT_SYNCED]
    problems = _across(res, [r for r in known if r.key != res.key])
    if res.kind in REFUSED_ACROSS:
        return problems, []
    return [], [describe(p) for p in problems]


def _across(res: Resource, others: list[Resource]) -> list[Problem]:
    """The cross-object problems of `res` among `others` (which never hold `res` itself)."""
    if isinstance(res, IPPool):
        # The overlap rule reports the later pool by name; pair by pair, and every
        # overlap is put on the pool being written, the one that can still be refused.
        pools = [o for o in others if isinstance(o, IPPool)]
        return [_about(res, p) for o in pools for p in cross_object_problems([res, o])]
    mine = (res.kind, res.metadata.namespace, res.metadata.name)
    return [p for p in cross_object_problems([res, *others])
            if (p.kind, p.namespace, p.name) == mine]


def _about(res: Resource, problem: Problem) -> Problem:
    return dataclasses.replace(
        problem, kind=res.kind, namespace=res.metadata.namespace, name=res.metadata.name
    )


def _normalised(obj: Mapping[str, Any], request: Mapping[str, Any]) -> Obj:
    """The object as the model reads it: the model's apiVersion for the kind, and the
    request's namespace when the object leaves it out."""
    out = dict(obj)
    kind = out.get("kind")
    if isinstance(kind, str) and kind in api.MODEL_API_VERSIONS:
        out["apiVersion"] = api.MODEL_API_VERSIONS[kind]
    meta = out.get("metadata")
    namespace = request.get("namespace")
    cls = KINDS.get(kind) if isinstance(kind, str) else None
    if cls is not None and cls.namespaced and isinstance(meta, Mapping) and namespace:
        out["metadata"] = {**meta, "namespace": meta.get("namespace") or namespace}
    return out


def _ours(kind: Any) -> bool:
    if not isinstance(kind, Mapping):
        raise Unreadable("request.kind must be an object with group, version and kind")
    return (kind.get("group"), kind.get("version"), kind.get("kind")) in OURS


def _object(request: Mapping[str, Any], field: str) -> Mapping[str, Any]:
    obj = request.get(field)
    if not isinstance(obj, Mapping):
        raise Unreadable(f"request.{field} must be an object")
    return obj


def _request(body: Any) -> Mapping[str, Any]:
    if not isinstance(body, Mapping):
        raise Unreadable("the body must be a JSON object")
    if (body.get("apiVersion"), body.get("kind")) != (REVIEW_API_VERSION, "AdmissionReview"):
        raise Unreadable(f"expected apiVersion {REVIEW_API_VERSION}, kind AdmissionReview")
    request = body.get("request")
    if not isinstance(request, Mapping):
        raise Unreadable("request must be an object")
    if not isinstance(request.get("uid"), str) or not request["uid"]:
        raise Unreadable("request.uid is missing")
    return request


def uid_of(body: Any) -> str:
    """The request uid of an AdmissionReview body, or "" when it has none."""
    request = body.get("request") if isinstance(body, Mapping) else None
    uid = request.get("uid") if isinstance(request, Mapping) else None
    return uid if isinstance(uid, str) else ""

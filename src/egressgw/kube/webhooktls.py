"""The webhook's CA on the cluster: one Secret every replica shares, and the caBundle.

Every controller replica serves the webhook, and the API server trusts only the CA in the
ValidatingWebhookConfiguration, so all replicas must use one CA:

- `shared_ca` reads the Secret (`tls.crt`/`tls.key` of the CA); when it is absent it creates
  it (POST: of replicas starting together one wins, the others get 409 and read the
  winner's); when it is unreadable or expires within `RENEW_BEFORE` it replaces it with a
  PUT carrying the resourceVersion it read (compare-and-swap: again one replica wins).
  Replacing a CA that running replicas still use breaks them until they restart; to rotate
  by hand, delete the Secret and restart the controller Deployment;
- each replica then signs its own serving certificate with that CA (`certs.serving_cert`);
- `publish_ca` writes the CA into every webhook of the ValidatingWebhookConfiguration: a
  read, then a PUT with its resourceVersion, retried on conflict; nothing is written when
  it is already there, so replicas do not fight.

The API calls go through `KubeClient`; the clock is a parameter.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from egressgw.kube import certs
from egressgw.kube.api import ApiResource
from egressgw.kube.client import ConflictError, KubeClient, NotFoundError

log = logging.getLogger(__name__)
Obj = dict[str, Any]
SECRET = ApiResource("", "v1", "secrets", "Secret", namespaced=True)
VALIDATING_WEBHOOKS = ApiResource(
    "admissionregistration.k8s.io", "v1", "validatingwebhookconfigurations",
    "ValidatingWebhookConfiguration", namespaced=False,
)
RENEW_BEFORE = timedelta(days=30)
ATTEMPTS = 5


async def shared_ca(
    client: KubeClient, namespace: str, name: str, now: Callable[[], datetime]
) -> certs.KeyPair:
    """The CA every replica uses, from the Secret `namespace/name` (created if absent)."""
    for _ in range(ATTEMPTS):
        try:
            secret: Obj | None = await client.get(SECRET, namespace, name)
        except NotFoundError:
            secret = None
        ca = _usable(secret, now())
        if ca is not None:
            return ca
        try:
            return await _write(client, namespace, name, secret, now())
        except ConflictError:
            log.info("Secret %s/%s was written by another replica; reading it", namespace, name)
    raise RuntimeError(f"Secret {namespace}/{name}: could not agree on a CA")


def _usable(secret: Obj | None, now: datetime) -> certs.KeyPair | None:
    if secret is None:
        return None
    data = secret.get("data") or {}
    try:
        ca = certs.KeyPair(_decoded(data, "tls.crt"), _decoded(data, "tls.key"))
        certs.load(ca)
    except (certs.CertificateError, ValueError) as err:
        log.warning("Secret %s: %s; replacing the CA", secret["metadata"]["name"], err)
        return None
    if ca.not_after - now < RENEW_BEFORE:
        log.warning("Secret %s: the CA expires at %s; replacing it",
                    secret["metadata"]["name"], ca.not_after)
        return None
    return ca


async def _write(
    client: KubeClient, namespace: str, name: str, old: Obj | None, now: datetime
) -> certs.KeyPair:
    """A new CA in the Secret: created, or replaced only if `old` is still current."""
    ca = certs.new_ca(now)
    meta: Obj = {"name": name, "namespace": namespace,
                 "labels": {"app.kubernetes.io/part-of": "egressgw"}}
    body: Obj = {"apiVersion": "v1", "kind": "Secret", "metadata": meta, "type": "kubernetes.io/tls",
                 "data": {"tls.crt": _b64(ca.cert_pem), "tls.key": _b64(ca.key_pem)}}
    if old is None:
        await client.create(SECRET, body)
        log.info("created the webhook CA in Secret %s/%s", namespace, name)
    else:
        meta["resourceVersion"] = old["metadata"]["resourceVersion"]
        await client.replace(SECRET, body)
        log.info("replaced the webhook CA in Secret %s/%s", namespace, name)
    return ca


async def publish_ca(client: KubeClient, name: str, ca_pem: bytes) -> bool:
    """Put `ca_pem` in the caBundle of every webhook of configuration `name`; False if that
    configuration does not exist (webhook not installed: nothing to do)."""
    bundle = _b64(ca_pem)
    for _ in range(ATTEMPTS):
        try:
            config = await client.get(VALIDATING_WEBHOOKS, None, name)
        except NotFoundError:
            log.warning("ValidatingWebhookConfiguration %s not found; caBundle not set", name)
            return False
        hooks = config.get("webhooks") or []
        if all(h.get("clientConfig", {}).get("caBundle") == bundle for h in hooks):
            return True
        for hook in hooks:
            hook.setdefault("clientConfig", {})["caBundle"] = bundle
        try:  # config carries the resourceVersion we read: a compare-and-swap
            await client.replace(VALIDATING_WEBHOOKS, config)
            log.info("set the caBundle of ValidatingWebhookConfiguration %s", name)
            return True
        except ConflictError:
            continue
    raise RuntimeError(f"ValidatingWebhookConfiguration {name}: caBundle kept conflicting")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _decoded(data: Obj, key: str) -> bytes:
    value = data.get(key)
    if not isinstance(value, str):
        raise ValueError(f"no {key}")
    return base64.b64decode(value, validate=True)

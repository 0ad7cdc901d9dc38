"""Serving the admission webhook: HTTPS on every controller replica.

`run_webhook` is what `egressgw kube controller` runs beside the leader election (every
replica serves; the Service spreads the API server's calls): it agrees on the CA with the
other replicas (`webhooktls.shared_ca`), publishes it as the caBundle, signs its own serving
certificate for the Service's names, follows the IPPools and BGPFilters the cross-object
checks need (`KnownObjects`, informers on the store), and serves:

- `POST /validate`: an AdmissionReview, answered by `webhook.review` (all the logic is there);
- `GET /readyz`: 200 once serving (the controller's readiness probe, so the Service only
  sends calls to replicas that can answer).

The serving certificate is signed again before it expires and loaded into the same TLS
context (new connections get it); the caBundle is checked every minute and put back if
the configuration was replaced. Errors reaching the API server at start are retried.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
import tempfile
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path
from typing import TypeVar

from aiohttp import web

from egressgw.kube import certs, webhook, webhooktls
from egressgw.kube.client import ApiError, KubeClient, Unreachable
from egressgw.model import Resource
from egressgw.store.base import Store
from egressgw.store.codec import resource_store
from egressgw.store.resources import Informer

log = logging.getLogger(__name__)
T = TypeVar("T")
PATH = "/validate"
MAX_BODY = 8 * 1024 * 1024  # an UPDATE review holds two objects of up to ~1.5 MiB each
KNOWN_KINDS = ("IPPool", "BGPFilter")  # what the cross-object checks compare against
Known = Callable[[], Iterable[Resource] | None]


def utc_now() -> datetime:
    return datetime.now(UTC)


class KnownObjects:
    """The IPPools and BGPFilters as the store has them; None until both are listed."""

    def __init__(self, store: Store, *, retry_delay: float = 2.0) -> None:
        resources = resource_store(store)
        self._informers = [
            Informer(resources, self._changed, kind=kind, retry_delay=retry_delay)
            for kind in KNOWN_KINDS
        ]

    async def _changed(self, state: object, revision: int) -> None:
        pass  # each informer keeps its state; reviews read it when they come

    def __call__(self) -> list[Resource] | None:
        if not all(i.synced.is_set() for i in self._informers):
            return None
        return [r for i in self._informers for r in i.state.values()]

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tasks:
            for informer in self._informers:
                tasks.create_task(informer.run())


def tls_context(
    ca: certs.KeyPair, names: list[str], now: datetime,
    ips: Iterable[IPv4Address | IPv6Address] = (),
) -> ssl.SSLContext:
    """A server TLS context with a fresh certificate for `names`, signed by `ca`."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    load_serving_cert(context, certs.serving_cert(ca, names, now, ips))
    return context


def load_serving_cert(context: ssl.SSLContext, pair: certs.KeyPair) -> None:
    # The ssl module loads certificates from files only; they live a moment in a private
    # directory (the controller's /tmp is an emptyDir).
    with tempfile.TemporaryDirectory(prefix="egressgw-webhook-") as tmp:
        cert, key = Path(tmp, "tls.crt"), Path(tmp, "tls.key")
        cert.write_bytes(pair.cert_pem)
        key.touch(mode=0o600)
        key.write_bytes(pair.key_pem)
        context.load_cert_chain(cert, key)


class WebhookServer:
    """The HTTPS endpoint; `start()` then `stop()`, or `run()` until cancelled."""

    def __init__(
        self, known: Known, context: ssl.SSLContext, *, host: str | None = None, port: int = 9443
    ) -> None:
        self._known = known
        self._context = context
        self._host = host
        self._port = port
        self._runner: web.AppRunner | None = None

    def app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY)
        app.router.add_post(PATH, self._validate)
        app.router.add_get("/readyz", self._ready)
        return app

    async def start(self) -> int:
        """Listen; returns the port (useful when asked for port 0)."""
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port, ssl_context=self._context)
        await site.start()
        port: int = self._runner.addresses[0][1]
        log.info("admission webhook serving HTTPS on port %d at %s", port, PATH)
        return port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def run(self) -> None:
        await self.start()
        try:
            await asyncio.Event().wait()
        finally:
            await self.stop()

    async def _validate(self, request: web.Request) -> web.Response:
        try:
            body = json.loads(await request.read())
        except ValueError:
            body = None
        try:
            answer = webhook.review(body, self._known())
        except Exception as err:  # a bug must not become an opaque HTTP 500
            log.exception("webhook review failed")
            failure = webhook.Verdict((f"egressgw webhook: internal error: {err!r}",), code=500,
                                      reason="InternalError")
            answer = webhook.response(webhook.uid_of(body), failure)
        verdict = answer["response"]
        if not verdict["allowed"]:
            log.info("refused: %s", verdict["status"]["message"])
        return web.json_response(answer)

    async def _ready(self, request: web.Request) -> web.Response:
        return web.Response(text="ok\n")


async def run_webhook(
    client: KubeClient,
    store: Store,
    *,
    namespace: str,
    service: str,
    secret: str,
    configuration: str,
    port: int = 9443,
    host: str | None = None,
    clock: Callable[[], datetime] = utc_now,
    retry_delay: float = 5.0,
    republish: float = 60.0,
) -> None:
    """Serve the webhook until cancelled (every replica)."""
    ca = await _retrying(lambda: webhooktls.shared_ca(client, namespace, secret, clock), retry_delay)
    await _retrying(lambda: webhooktls.publish_ca(client, configuration, ca.cert_pem), retry_delay)
    names = certs.service_names(service, namespace)
    context = tls_context(ca, names, clock())
    known = KnownObjects(store, retry_delay=retry_delay)
    async with asyncio.TaskGroup() as tasks:
        tasks.create_task(known.run())
        tasks.create_task(WebhookServer(known, context, host=host, port=port).run())
        tasks.create_task(_renew(context, ca, names, clock))
        tasks.create_task(_keep_published(client, configuration, ca.cert_pem, republish))


async def _keep_published(client: KubeClient, name: str, ca_pem: bytes, every: float) -> None:
    """Put the caBundle back if the configuration is replaced (reinstalled, or applied
    from a manifest that was edited by hand); a read every `every` seconds otherwise."""
    while True:
        await asyncio.sleep(every)
        try:
            await webhooktls.publish_ca(client, name, ca_pem)
        except (ApiError, Unreachable, RuntimeError) as err:
            log.warning("webhook caBundle: %s", err)


async def _renew(
    context: ssl.SSLContext, ca: certs.KeyPair, names: list[str], clock: Callable[[], datetime]
) -> None:
    lifetime = certs.SERVING_LIFETIME.total_seconds()
    while True:
        await asyncio.sleep(lifetime * 0.8)  # well before it expires
        load_serving_cert(context, certs.serving_cert(ca, names, clock()))
        log.info("renewed the webhook's serving certificate")


async def _retrying(step: Callable[[], Awaitable[T]], delay: float) -> T:
    while True:
        try:
            return await step()
        except (ApiError, Unreachable) as err:
            log.warning("webhook setup: %s; retrying in %.0fs", err, delay)
            await asyncio.sleep(delay)

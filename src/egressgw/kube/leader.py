"""Leader election with a `coordination.k8s.io/v1` Lease, as client-go does it.

One candidate holds the Lease and renews it every `retry` seconds; the others try as often.
A candidate takes the Lease over when its holder has not renewed it for `lease_seconds`,
judged by *our own* clock from the moment we last saw the record change (never by
comparing the holder's timestamps with our clock, so clock skew between nodes does not
matter). Every write is guarded by the Lease's resourceVersion, so two candidates can never
both succeed. A leader that cannot renew within `renew_deadline` seconds stops its work
before anyone else may start (renew_deadline < lease_seconds). The clock and the sleep are
injected so tests can run elections in virtual time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from egressgw.kube.api import LEASE
from egressgw.kube.client import ApiError, ConflictError, KubeClient, NotFoundError, Unreachable

log = logging.getLogger(__name__)
Obj = dict[str, Any]


def micro_time(seconds: float) -> str:
    """A Kubernetes MicroTime (RFC 3339 with microseconds, UTC)."""
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaderElector:
    """Run `work` only while holding the Lease `namespace/name`."""

    def __init__(
        self,
        client: KubeClient,
        *,
        namespace: str,
        name: str,
        identity: str,
        lease_seconds: int = 15,
        renew_deadline: float = 10.0,
        retry: float = 2.0,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if not retry < renew_deadline < lease_seconds:
            raise ValueError("need retry < renew_deadline < lease_seconds")
        self.client = client
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.lease_seconds = lease_seconds
        self.renew_deadline = renew_deadline
        self.retry = retry
        self._clock = clock
        self._sleep = sleep
        self._observed: tuple[str, str] | None = None  # (holder, renewTime) last seen
        self._observed_at = 0.0
        self.is_leader = False

    async def run(self, work: Callable[[], Awaitable[None]]) -> None:
        """Acquire, run `work` while renewing; on losing the Lease stop it and start over.
        Returns when `work` returns; releases the Lease on the way out."""
        try:
            while True:
                await self._acquire()
                if await self._lead(work):
                    return
        finally:
            await self.release()

    async def try_acquire_or_renew(self) -> bool:
        """One attempt; True if we hold the Lease afterwards."""
        now = self._clock()
        try:
            lease = await self.client.get(LEASE, self.namespace, self.name)
        except NotFoundError:
            return await self._write(None, now)
        except (ApiError, Unreachable) as err:
            log.warning("lease %s/%s: %s", self.namespace, self.name, err)
            return False
        spec = lease.get("spec") or {}
        holder = spec.get("holderIdentity") or ""
        record = (holder, str(spec.get("renewTime") or ""))
        if record != self._observed:
            self._observed, self._observed_at = record, now
        duration = int(spec.get("leaseDurationSeconds") or self.lease_seconds)
        if holder and holder != self.identity and now < self._observed_at + duration:
            return False
        return await self._write(lease, now)

    async def release(self) -> None:
        """Give the Lease up (holder cleared) if we hold it, so a successor need not wait."""
        if not self.is_leader:
            return
        self.is_leader = False
        with contextlib.suppress(ApiError, Unreachable):
            lease = await self.client.get(LEASE, self.namespace, self.name)
            if (lease.get("spec") or {}).get("holderIdentity") == self.identity:
                spec = {**lease["spec"], "holderIdentity": None, "leaseDurationSeconds": 1}
                await self.client.replace(LEASE, {**lease, "spec": spec})

    async def _acquire(self) -> None:
        while not await self.try_acquire_or_renew():
            await self._sleep(self.retry)
        log.info("%s became leader of %s/%s", self.identity, self.namespace, self.name)

    async def _lead(self, work: Callable[[], Awaitable[None]]) -> bool:
        """Run `work` while renewing; True if it finished, False if the Lease was lost."""
        task = asyncio.ensure_future(work())
        try:
            last_renewed = self._clock()
            while not task.done():
                pause = asyncio.ensure_future(self._sleep(self.retry))
                await asyncio.wait([task, pause], return_when=asyncio.FIRST_COMPLETED)
                pause.cancel()
                if task.done():
                    break
                if await self.try_acquire_or_renew():
                    last_renewed = self._clock()
                elif self._clock() - last_renewed >= self.renew_deadline:
                    log.warning("%s lost the lease %s/%s", self.identity, self.namespace, self.name)
                    self.is_leader = False
                    return False
            task.result()
            return True
        finally:
            if not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)

    async def _write(self, lease: Obj | None, now: float) -> bool:
        spec = (lease or {}).get("spec") or {}
        taking_over = spec.get("holderIdentity") != self.identity
        new_spec = {
            **spec,
            "holderIdentity": self.identity,
            "leaseDurationSeconds": self.lease_seconds,
            "renewTime": micro_time(now),
        }
        if taking_over:
            new_spec["acquireTime"] = micro_time(now)
            new_spec["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + (1 if lease else 0)
        meta = {"name": self.name, "namespace": self.namespace}
        if lease is not None:
            meta = {**lease["metadata"], **meta}  # carries the resourceVersion: a CAS write
        body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": meta, "spec": new_spec}
        try:
            saved = await (self.client.replace(LEASE, body) if lease else self.client.create(LEASE, body))
        except (ConflictError, NotFoundError):
            return False
        except (ApiError, Unreachable) as err:
            log.warning("lease %s/%s: %s", self.namespace, self.name, err)
            return False
        saved_spec = saved.get("spec") or {}
        self._observed = (self.identity, str(saved_spec.get("renewTime") or ""))
        self._observed_at = now
        self.is_leader = True
        return True

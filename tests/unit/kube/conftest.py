"""Fixtures: the API emulator on a local port and a real `KubeClient` (kr8s) pointed at it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import kmock
import pytest_asyncio

from egressgw.kube.client import KubeClient
from tests.unit.kube.emulator import ApiServer


@pytest_asyncio.fixture
async def apiserver() -> AsyncIterator[ApiServer]:
    async with ApiServer() as server, kmock.Server(server):
        yield server


@pytest_asyncio.fixture
async def client(apiserver: ApiServer, tmp_path: object) -> AsyncIterator[KubeClient]:
    kube = await KubeClient.connect(url=str(apiserver.url).rstrip("/"))
    try:
        yield kube
    finally:
        await kube.close()

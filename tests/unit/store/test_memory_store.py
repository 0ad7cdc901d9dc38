"""The shared Store behaviour suite, run against MemoryStore."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import pytest

from egressgw.store.base import Store
from egressgw.store.memory import MemoryStore
from tests.unit.store.contract import Backend, StoreContract


class MemoryBackend(Backend):
    """Every client is the same MemoryStore, as every etcd client sees the same server."""

    name = "memory"

    def __init__(self) -> None:
        super().__init__()
        self.store = MemoryStore()

    @contextlib.asynccontextmanager
    async def client(self) -> AsyncIterator[Store]:
        yield self.store


@pytest.fixture
def backend() -> Backend:
    return MemoryBackend()


class TestMemoryStore(StoreContract):
    pass

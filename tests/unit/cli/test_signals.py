"""Long-running commands stop cleanly on SIGTERM, and only on their own SIGTERM."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

# A daemon like `egressgw agent`: until_signalled around work that forks a helper without
# exec and stops it with SIGTERM, as pyroute2 does for netns operations.
DAEMON = """
import asyncio, os, signal, sys, time
from egressgw.cli.daemons import until_signalled

async def work():
    ready, started = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.write(started, b"x")  # past fork's own bookkeeping, which drops pending signals
        time.sleep(30)
        os._exit(0)
    os.read(ready, 1)
    os.kill(pid, signal.SIGTERM)
    os.waitpid(pid, 0)
    print("helper stopped", flush=True)
    try:
        await asyncio.sleep(30)
    finally:
        print("cleanup ran", flush=True)

asyncio.run(until_signalled(work()))
print("exited", flush=True)
"""


def test_a_forked_helpers_sigterm_does_not_stop_the_daemon_its_own_does() -> None:
    proc = subprocess.Popen([sys.executable, "-c", DAEMON], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline() == "helper stopped\n"  # within the timeout below
    time.sleep(0.3)
    assert proc.poll() is None, "the helper's SIGTERM stopped the daemon"
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=10)
    assert (proc.returncode, out) == (0, "cleanup ran\nexited\n")

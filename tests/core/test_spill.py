"""The spill's open-file limit: sizing partitions reads it, opening the parts raises it."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

resource = pytest.importorskip("resource")

# Run in a child: the open-file limit is per process, and this test lowers it first.
_CHILD = textwrap.dedent(
    """
    import resource, sys, tempfile
    from batch_workflows.spill import HashSpill, files_needed, partitions_for

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    low = 256
    if hard != resource.RLIM_INFINITY and hard < 2 * low:
        print("skip: hard limit too low"); sys.exit(0)
    resource.setrlimit(resource.RLIMIT_NOFILE, (low, hard))
    n = partitions_for(10**12, 1)
    assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] == low, "partitions_for set the limit"
    assert n > (low - 64) // 2, n  # sized for the limit the spill may raise, not today's
    with tempfile.TemporaryDirectory() as tmp:
        with HashSpill.temporary(n, tmp, ".t-"):
            assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] >= files_needed(n)
    print("ok")
    """
)


def test_partitions_for_is_pure_and_the_spill_raises_the_limit() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _CHILD], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    if done.stdout.startswith("skip"):
        pytest.skip(done.stdout.strip())
    assert done.stdout.strip() == "ok"


def test_ids_of_one_length_fall_in_the_partitions_of_the_general_hash() -> None:
    import numpy as np
    import pyarrow as pa

    from batch_workflows.spill import partition_of

    ids = [f"p{i * 7919:016x}-s{i % 2}" for i in range(3000)]
    alone = partition_of(pa.array(ids), 61)  # one length: the matrix product
    mixed = partition_of(pa.array([*ids, "of another length"]), 61)  # the per-byte weights
    assert np.array_equal(alone, mixed[:-1])
    assert np.array_equal(partition_of(pa.array(ids).slice(7, 100), 61), alone[7:107])

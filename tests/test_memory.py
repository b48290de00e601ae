"""Memory planning (`phiml_data.memory`): a lazy epoch stays inside the memory limit."""

import numpy as np
import pytest
from phiml import math

from conftest import run_python
from phiml_data import Burgers2D, DataManager

_RSS_CHILD = """
import sys, resource
from phiml_data import DataManager, Burgers2D, PhiMLDataset
def rss_mib(key):
    for line in open('/proc/self/status'):
        if line.startswith(key):
            return int(line.split()[1]) / 1024
dm = DataManager(sys.argv[1], Burgers2D(resolution=64, steps=100))
limit = int(sys.argv[2])
ds = PhiMLDataset(dm, n_targets=4, batch_size=16, memory_limit=limit, prefetch=1, normalize=False)
assert not ds.in_memory
# VmHWM is the peak so far; reset it so that only the epoch counts
open('/proc/self/clear_refs', 'w').write('5')
before = rss_mib('VmRSS:')
n = sum(b['targets'].shape.get_size('batch') for b in ds.iterate_batches())
print(ds.data_bytes() / 2**20, before, rss_mib('VmHWM:'), n, len(ds))
"""


@pytest.mark.slow
def test_lazy_epoch_stays_inside_the_memory_limit(tmp_path):
    dm = DataManager(tmp_path, Burgers2D(resolution=64, steps=100))
    rng = np.random.default_rng(0)
    template = math.zeros(math.batch(time=101), math.spatial(x=64, y=64), math.channel(vector='x,y'))
    for i in range(40):  # 40 sims x 101 frames x 64 x 64 x 2 float32 = 126 MiB
        dm.save_phiml_cache(
            i,
            {
                'velocity': template
                + math.tensor(rng.standard_normal(template.shape.sizes, dtype=np.float32), template.shape)
            },
        )
    limit = 24 * 2**20
    data_mib, before, peak, n, total = map(float, run_python(_RSS_CHILD, dm.directory.parent, limit).split())
    assert data_mib > 4 * limit / 2**20
    assert n == total
    assert peak - before < limit / 2**20 + 16, f"peak RSS {peak:.0f} MiB, before the epoch {before:.0f} MiB"

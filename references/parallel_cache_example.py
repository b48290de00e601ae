"""parallel_compute with cache_dir / memory_limit on our 2D Burgers scenario. Run: python references/parallel_cache_example.py

Two worker processes simulate 4 sims; results over the memory limit are moved to HDF5 files in `cache_dir` and come
back as lazy tensors. The same sims come out as from `simulate` (each sim is seeded from its own index).
"""

import tempfile
from pathlib import Path

import numpy as np

from phiml_data import Burgers2D, simulate
from phiml_data.offload import compute_ensemble

if __name__ == '__main__':
    scenario = Burgers2D(resolution=16, steps=8)
    with tempfile.TemporaryDirectory() as cache_dir:
        fields = compute_ensemble(scenario, n_sims=4, cache_dir=cache_dir, memory_limit=20_000, max_workers=2)
        velocity = fields['velocity']
        print('ensemble:', velocity.shape, type(velocity).__name__)
        files = sorted(p.name for p in Path(cache_dir).rglob('*') if p.is_file())
        print(f'offloaded files: {len(files)}')
        assert files, 'with a 20 kB limit the results must be offloaded to disk'
        reference = simulate(scenario, [2])[0]['velocity']
        assert np.array_equal(velocity.sim[2].numpy('time,x,y,vector'), reference.numpy('time,x,y,vector'))
    print('parallel_cache_example: results match simulate()')

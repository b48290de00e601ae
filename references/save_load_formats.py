"""PhiML's save/load formats, measured. Run: python references/save_load_formats.py"""

import os
import tempfile
import time

import h5py
import numpy as np
from phiml import math
from phiml.math import batch, channel, spatial
from phiml.math._tree import load_h5, save_h5

t = math.random_normal(batch(time=100), spatial(x=64, y=64), channel(vector='x,y'))
with tempfile.TemporaryDirectory() as d:
    # .npz: names, types and item names round-trip; NumPy appends .npz; loading needs the full name.
    math.save(os.path.join(d, 'traj'), t)
    loaded = math.load(os.path.join(d, 'traj.npz'))
    assert loaded.shape == t.shape and math.close(loaded, t)
    # The pickle caveat: math.load uses np.load(..., allow_pickle=True), so a crafted file can run code on load.
    import inspect

    import phiml.math._tree as tree

    assert 'allow_pickle=True' in inspect.getsource(tree.load)

    # HDF5 via save_h5 / load_h5: lazy DiskTensors with load_into_memory=().
    path = os.path.join(d, 'traj.h5')
    save_h5(path, {'velocity': t})
    with h5py.File(path) as f:
        assert f['root[velocity]'].chunks is None  # contiguous, uncompressed
    lazy = load_h5(path, load_into_memory=())['velocity']
    t0 = time.perf_counter()
    window = lazy.time[10:14].numpy('time,x,y,vector')
    t_disk = time.perf_counter() - t0
    with h5py.File(path) as f:
        t0 = time.perf_counter()
        direct = f['root[velocity]'][10:14]
        t_h5 = time.perf_counter() - t0
    assert np.array_equal(window, direct)
    print(
        f'4-frame window of a {t.shape.volume * 4 / 2**20:.0f} MB trajectory: DiskTensor slice {t_disk * 1e3:.1f} ms, '
        f'h5py slice {t_h5 * 1e3:.1f} ms ({t_disk / t_h5:.0f}x)'
    )
print('save_load_formats: all checks passed')

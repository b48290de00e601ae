"""Process-wide state in PhiML that a data pipeline must not lean on. Run: python references/global_state.py

1. `with backend:` pushes onto ONE process-wide stack (`phiml.backend._backend._DEFAULT`), not a thread-local one:
   a context entered in one thread is the default in every other thread until it exits. So generation draws every
   random number from per-sim NumPy generators and creates its arrays as NumPy arrays, and the trainer enters its
   backend's context only around its own calls (`phiml_data.trainer`, `phiml_data.backends`).
2. `math.seed` reseeds NumPy's, torch's and jax's global generators (and Python's `random`): two threads generating
   sims with it interleave their draws. Per-sim generators (`phiml_data.scenarios.sim_rng`) do not.
3. `Tensor.numpy()` converts to the CURRENT precision: a float64 tensor comes back as float32 under the default
   precision, silently. Check `tensor.dtype` itself before trusting a dtype (`phiml_data.generation.validate_fields`).
4. `math.tensor(array)` converts to the current default backend (`convert=True`), so a tensor made in a prefetch
   thread is torch or NumPy depending on what the training thread holds at that moment (and so is arithmetic with
   it). Batches and normalisation constants are made with `convert=False` (`phiml_data.dataset`,
   `phiml_data.normalization`): NumPy whatever the other threads do.
"""

import threading

import numpy as np
from phiml import math
from phiml.backend import NUMPY, default_backend

# 1. a backend context is visible from another thread
seen = []
inside, done = threading.Event(), threading.Event()


def other_thread():
    inside.wait()
    seen.append(default_backend().name)
    done.set()


thread = threading.Thread(target=other_thread)
thread.start()
before = default_backend()
with NUMPY:
    inside.set()
    done.wait()
thread.join()
assert seen == ['numpy'], seen  # the other thread saw this thread's context
assert default_backend() is before

# 2. math.seed changes what every other user of NumPy's global generator draws
np.random.seed(1)
expected = np.random.rand()
np.random.seed(1)
math.seed(0)  # someone else seeds "their" simulation
assert np.random.rand() != expected
rng_a, rng_b = np.random.default_rng([0, 5]), np.random.default_rng([0, 5])
math.seed(123)
assert rng_a.standard_normal() == rng_b.standard_normal()  # per-sim generators are unaffected

# 3. .numpy() follows the current precision, not the tensor's dtype
t = math.tensor(np.zeros(3, np.float64))
assert t.dtype.bits == 64 and t.numpy().dtype == np.float32

# 4. math.tensor follows the default backend unless convert=False
from phiml.backend.torch import TORCH  # noqa: E402  (the backend whose context a trainer holds)

with TORCH:
    assert math.tensor(np.zeros(2)).backend.name == 'torch'
    assert math.tensor(np.zeros(2), convert=False).backend.name == 'numpy'

print('global_state: all checks passed')

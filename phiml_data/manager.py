"""DataManager: the on-disk cache of simulations, one self-describing, verified file per simulation.

Step 2 of the pipeline (scenarios -> manager (cache) -> dataset -> trainer). `DataManager` holds the `Cache` of one
scenario configuration (`phiml_data.cache`: directory layout, key, manifest, verified reads, recorded writes; the
API the package's own modules use, as `dm.cache`) and offers the user-facing API: `generate` (simulate and repair,
`generation`), `save_phiml_cache`, `load_phiml_cache`, `summary`, `manifest`.
"""

from __future__ import annotations

from concurrent.futures import Executor

from phiml.math import Tensor

from . import generation
from .cache import Cache
from .formats import CacheError


class SimulationData(dict):
    """`{field: Tensor}` of one cached simulation, with its metadata dict as `.metadata`.

    Dynamic fields: `Tensor (timeᵇ, xˢ, [yˢ], [vectorᶜ])`; static fields: `Tensor (xˢ, [yˢ])`.
    """

    def __init__(self, fields: dict[str, Tensor], metadata: dict):
        super().__init__(fields)
        self.metadata = metadata


class DataManager:
    """Creates, reads, verifies and repairs the cache of one scenario configuration: the user-facing API (the names
    of the migration plan) of the `Cache` it holds.

    Args: those of `Cache`: `cache_dir` (root of all caches), `scenario`, `fmt` (a registered format, default `'h5'`),
        `allow_pickle` (only for formats whose loader unpickles, and only for caches you wrote yourself).

    Attributes:
        cache: The `Cache` (directory, key, manifest, verified reads and writes).

    Example:
        >>> dm = DataManager(tmp, Burgers2D(resolution=16, steps=8))
        >>> dm.generate(2, progress=False)
        [0, 1]
        >>> sim = dm.load_phiml_cache(0)
        >>> sim['velocity'].shape, sim.metadata['dt']
        ((timeᵇ=9, xˢ=16, yˢ=16, vectorᶜ=x,y), 0.05)
    """

    def __init__(self, cache_dir, scenario, fmt: str = 'h5', allow_pickle: bool = False):
        self.cache = Cache(cache_dir, scenario, fmt, allow_pickle)

    def __repr__(self):
        return f"DataManager({self.directory}, {len(self.cached_indices())} sims cached)"

    # --- what the cache is ---

    @property
    def scenario(self):
        """The scenario (a frozen `Scenario` dataclass)."""
        return self.cache.scenario

    @property
    def directory(self):
        """`cache_dir / <scenario>-<key>`."""
        return self.cache.directory

    @property
    def key(self) -> str:
        """The cache key: a hash of everything that determines the data (`keys.key_payload`)."""
        return self.cache.key

    @property
    def format(self):
        """The storage `Format` (`format.name`: its registry name)."""
        return self.cache.format

    def path(self, sim_index: int):
        """File of simulation `sim_index` (whether or not it exists)."""
        return self.cache.path(sim_index)

    def cached_indices(self) -> list[int]:
        """Sorted indices of the recorded sims whose file is present."""
        return self.cache.cached_indices()

    def manifest(self) -> dict[int, dict]:
        """`{sim_index: {'file', 'bytes', 'origin', 'fields': {name: {'shape', 'dtype', 'digest'}}}}` of recorded sims."""
        return self.cache.entries()

    # --- writing ---

    def save_phiml_cache(self, sim_index: int, field_data: dict[str, Tensor]) -> dict:
        """Validates and writes one simulation, then records it in the manifest.

        Args:
            sim_index: Index of the simulation (>= 0).
            field_data: `{field: Tensor}` with exactly the scenario's fields, each of shape
                `scenario.field_shape(field)`: dynamic `Tensor (timeᵇ=steps+1, xˢ, [yˢ], [vectorᶜ])`, static
                fields without `time`; dtype `scenario.dtype`. Dim order does not matter.

        Returns:
            The manifest entry of the sim.

        Raises:
            ValueError: Missing or unknown fields, wrong dims, sizes, item names or dtype, or NaN / Inf values;
                the message lists every difference, the sim and the parameters.
        """
        return self.cache.write(sim_index, field_data, origin='saved')

    def generate(
        self,
        n_sims: int | list[int],
        executor: Executor = None,
        batch_size: int = 8,
        progress: bool = True,
        verify: bool = False,
        claims: bool = True,
    ) -> list[int]:
        """Simulates and caches the sims that are not cached, after repairing what it finds broken.

        Repairs, before simulating: leftover temporary files of killed writers are deleted; files listed in the
        manifest that are gone are forgotten; files that fail a cheap check (size, header, identity) or, with
        `verify=True`, any frame's checksum are moved to `quarantine/` and regenerated; valid files missing from the
        manifest (a crash between rename and record) are adopted.

        Batchable scenarios run `batch_size` sims per vectorised run. With an `executor` (e.g. a
        `concurrent.futures.ProcessPoolExecutor` or a `dask.distributed.Client`), chunks run there; each worker first
        checks that it computes the same cache key (same library versions and scenario code), then writes its files
        into the cache directory and returns only manifest entries.

        Args:
            n_sims: Number of sims (indices `0..n_sims-1`) or an explicit list of indices.
            executor: Where to run the chunks; `None` runs them in this process.
            batch_size: Sims per chunk (one vectorised run for batchable scenarios).
            progress: Show a progress bar.
            verify: Check every frame of every cached file, not only its size and header.
            claims: Claim each sim with an `flock` so that concurrent generators never simulate the same sim. Pass
                `False` when no other job writes these indices (SLURM array tasks with disjoint `--shard`s), also on a
                filesystem without `flock`.

        Returns:
            The indices that were generated by this call.
        """
        return generation.generate(self.cache, n_sims, executor, batch_size, progress, verify, claims)

    # --- reading ---

    def load_phiml_cache(self, sim_index: int, fields: list[str] = None) -> SimulationData:
        """Loads one cached simulation fully into memory, verified against the manifest and the scenario.

        Args:
            sim_index: Index of the simulation.
            fields: Field names to load; all by default.

        Returns:
            `SimulationData`: `{field: Tensor}` exactly as saved (dims, types, item names, dtype, values),
            with `.metadata` (scenario, parameters, identity, sim index, dt, bounds, resolution, per-field grid info).

        Raises:
            CacheError: Missing, truncated or corrupted file, a file from another configuration, sim or format
                version, or an unknown field. The message names the file and how to repair it.
        """
        fields = list(self.scenario.fields) if fields is None else list(fields)
        unknown = [f for f in fields if f not in self.scenario.fields]
        if unknown:
            raise CacheError(
                f"Unknown field(s) {unknown}; scenario '{self.scenario.name}' has {sorted(self.scenario.fields)}."
            )
        with self.cache.open_sim(sim_index) as sim:
            return SimulationData({f: sim.tensor(f) for f in fields}, sim.metadata)

    def summary(self) -> dict:
        """What the cache holds: directory, key, sims, fields with shape spec and dtype, size on disk in bytes."""
        manifest = self.manifest()
        first = manifest[min(manifest)]['fields'] if manifest else {}
        return {
            'directory': str(self.directory),
            'key': self.key,
            'scenario': self.scenario.params(),
            'format': self.format.name,
            'sims': len(self.cached_indices()),
            'fields': {k: {'shape': v['shape'], 'dtype': v['dtype']} for k, v in first.items()},
            'bytes': sum(e.get('bytes', 0) for e in manifest.values()),
        }

"""Generating a cache: simulate the missing sims (here or on workers), write them, and repair what is broken.

Part of step 2 of the pipeline (scenarios -> manager (cache) -> dataset -> trainer); `DataManager.generate` is the
entry point. Workers run `generate_chunk`: they check that they compute the client's cache key, claim each sim with
an `flock`, simulate, validate and write files renamed into place, and return only manifest entries.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .formats import CacheError, get_format
from .formats.base import field_entry
from .keys import differences, key_payload
from .manifest import sim_file_name
from .scenarios import Scenario, simulate
from .writing import sim_index, write_sim

if TYPE_CHECKING:
    from .cache import Cache

_TMP_SIM = re.compile(r'^\.sim_(\d+)\..*\.tmp$')


def generate(cache: Cache, n_sims, executor=None, batch_size=8, progress=True, verify=False, claims=True) -> list[int]:
    """See `DataManager.generate`."""
    from tqdm.auto import tqdm

    indices = (
        list(range(sim_index(n_sims))) if isinstance(n_sims, (int, np.integer)) else [sim_index(i) for i in n_sims]
    )
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    cache.manifest_store.check_config()
    sweep_temporaries(cache.directory, indices, claims)
    kept = repair(cache, indices, verify)
    missing = [i for i in _missing(cache, indices) if i not in kept]
    if missing and claims:  # only writers need to coordinate: a complete cache may be read-only
        check_flock(cache.directory)
    bar = tqdm(
        total=len(missing), desc=f'simulating {cache.scenario.name}', unit='sim', disable=not progress or not missing
    )
    generated, todo, rounds = [], missing, 0
    try:
        while todo:
            rounds += 1
            if rounds > 3:
                raise RuntimeError(f"Sims {todo[:10]} are still missing after {rounds - 1} rounds in {cache.directory}")
            chunks = [todo[i : i + batch_size] for i in range(0, len(todo), batch_size)]
            for entries in _run_chunks(cache, chunks, executor, bar, claims):
                cache.manifest_store.update(entries)
                generated.extend(entries)
            todo = _wait_for_other_writers(cache, _missing(cache, todo)) if claims else _missing(cache, todo)
    finally:
        bar.close()
    cache.manifest_store.compact()
    if kept:
        raise CacheError(
            f"Sims {kept} were imported, not simulated, and failed verification; they were moved to "
            f"{cache.directory / 'quarantine'}. Import them again."
        )
    return sorted(generated)


def _run_chunks(cache, chunks, executor, bar, claims):
    """Yields the manifest entries of each chunk as it finishes; raises after all ran if any failed."""
    args = (str(cache.directory), cache.scenario, cache.format.name, cache.payload)
    if executor is None:
        for chunk in chunks:
            yield generate_chunk(*args, chunk, claims)
            bar.update(len(chunk))
        return
    dask = hasattr(executor, 'gather')  # a dask.distributed.Client caches results by key: a retry must be a new task
    futures = {
        executor.submit(generate_chunk, *args, chunk, claims, **({'pure': False} if dask else {})): chunk
        for chunk in chunks
    }
    failed = []
    for future in _as_completed(executor, futures):
        try:
            yield future.result()
        except Exception as err:  # a worker died or a sim failed: report, keep the others
            failed.append((futures[future], err))
        bar.update(len(futures[future]))
    if failed:
        lines = '\n'.join(f"  sims {c}: {type(e).__name__}: {e}" for c, e in failed)
        raise RuntimeError(
            f"{sum(len(c) for c, _ in failed)} sims failed; nothing partial was written. "
            f"Fix the cause below, then rerun generate() to complete them:\n{lines}"
        )


def _wait_for_other_writers(cache, indices) -> list[int]:
    """Waits until no other process holds the claim on `indices`, adopts what they wrote; returns the rest."""
    for i in indices:
        with claim(cache.directory, i, block=True):
            pass
    repair(cache, indices, verify=False)
    return _missing(cache, indices)


def _missing(cache, indices) -> list[int]:
    """Indices without a manifest entry or whose file is gone."""
    cached = set(cache.cached_indices())
    return [i for i in indices if i not in cached]


def sweep_temporaries(directory: Path, indices, claims: bool = True):
    """Deletes temporary files of writers of `indices` that died (their sim's claim is free, or there are no claims)."""
    if not directory.exists():
        return
    indices = set(indices)
    for path in directory.iterdir():
        match = _TMP_SIM.match(path.name)
        if match and int(match.group(1)) in indices:
            with claim(directory, int(match.group(1))) if claims else contextlib.nullcontext(True) as mine:
                if mine:
                    path.unlink(missing_ok=True)


def repair(cache, indices, verify: bool) -> list[int]:
    """Forgets gone files, quarantines broken ones, adopts valid unrecorded ones; returns broken non-simulated sims.

    Recorded files get a cheap check (size, header, identity); with `verify` every frame's checksum too.
    """
    if not cache.directory.exists():
        return []
    for line in cache.manifest_store.quarantine_problems():
        warnings.warn(f"Malformed manifest entry: {line}; its sim's file is checked and adopted again", stacklevel=3)
    recorded, present = cache.entries(), set(os.listdir(cache.directory))
    forget, adopt, kept = [], {}, []
    for i in indices:
        entry = recorded.get(i)
        if sim_file_name(i, cache.format.suffix) not in present:
            if entry:
                forget.append(i)
            continue
        try:
            if entry:
                _check_file(cache, i, entry, full=verify)
            else:
                adopt[i] = _adopt_entry(cache, i)
        except CacheError as err:
            _quarantine(cache, i, err)
            forget.append(i)
            if entry and entry.get('origin') != 'simulated':
                kept.append(i)
    cache.manifest_store.update(adopt, forget)
    return kept


def _check_file(cache, i: int, entry: dict, full: bool):
    path = cache.path(i)
    if path.stat().st_size != entry.get('bytes'):
        raise CacheError(
            f"Cache file {path} has {path.stat().st_size} bytes; the manifest recorded {entry.get('bytes')}."
        )
    cache.forget_verification(i)
    with cache.open_sim(i) as sim:
        if full:
            sim.read_all()


def _adopt_entry(cache, i: int) -> dict:
    """Manifest entry of a file that was renamed into place but never recorded, after checking all its frames."""
    path = cache.path(i)
    with cache.format.open(path, cache.allow_pickle) as reader:
        origin = reader.header['metadata'].get('origin', 'simulated')
        entry = {
            'file': path.name,
            'bytes': path.stat().st_size,
            'origin': origin,
            'fields': {k: field_entry(v) for k, v in reader.fields.items()},
        }
    with cache.open_sim(
        i, entry
    ) as sim:  # identity against the scenario, then every frame against the file's checksums
        sim.read_all()
    return entry


def _quarantine(cache, i: int, reason: Exception):
    """Moves a broken file aside (never deletes data) and notes why."""
    target = cache.directory / 'quarantine'
    target.mkdir(exist_ok=True)
    dest = target / f'{cache.path(i).name}.{time.strftime("%Y%m%d-%H%M%S")}'
    os.replace(cache.path(i), dest)
    dest.with_name(dest.name + '.reason.txt').write_text(str(reason))
    cache.forget_verification(i)


def generate_chunk(
    directory: str, scenario: Scenario, fmt: str, payload: dict, indices: list[int], claims: bool = True
):
    """Simulates and writes the sims of `indices` that no other writer has claimed or written (runs on workers).

    Args:
        payload: The client's `key_payload`; a worker that computes another one (other library versions or scenario
            code) refuses, naming every difference.
        claims: Claim each sim with an `flock` first; `False` where no other job writes these indices.

    Returns:
        Manifest entries of the sims this call wrote; sims claimed by another process are left to it.
    """
    mine = key_payload(scenario, fmt)
    if mine != payload:
        import socket

        raise RuntimeError(
            f"Worker {socket.gethostname()} (pid {os.getpid()}) would write different data than the client expects: "
            + '; '.join(differences(mine, payload)).replace('(found)', '(worker)').replace('(expected)', '(client)')
            + ". Install the same versions and phiml_data code on every worker."
        )
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    suffix = get_format(fmt).suffix
    with contextlib.ExitStack() as stack:
        todo = [
            i
            for i in indices
            if (not claims or stack.enter_context(claim(directory, i)))
            and not (directory / sim_file_name(i, suffix)).exists()
        ]
        return {
            i: write_sim(directory, scenario, fmt, i, data, origin='simulated')
            for i, data in zip(todo, simulate(scenario, todo))
        }


@contextlib.contextmanager
def claim(directory: Path, sim_index: int, block: bool = False):
    """Exclusive claim on writing one sim, across processes; yields whether it was obtained.

    An `flock` on `.sim_<i>.lock`, released when the holder finishes or dies (a killed writer never blocks a rerun).
    The holder deletes the lock file before releasing it, so no file stays behind; a waiter that then holds the lock
    of a deleted file sees that the path no longer names its file and tries again.
    """
    path = Path(directory) / f'.sim_{sim_index:06d}.lock'
    while True:
        lock = open(path, 'a')
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | (0 if block else fcntl.LOCK_NB))
        except BlockingIOError:
            lock.close()
            yield False
            return
        try:
            current = os.stat(path).st_ino
        except FileNotFoundError:
            current = None
        if current == os.fstat(lock.fileno()).st_ino:
            break
        lock.close()  # we locked a file its holder deleted: take the new one
    try:
        yield True
    finally:
        path.unlink(missing_ok=True)
        lock.close()


def check_flock(directory: Path):
    """Refuses to coordinate writers on a filesystem without `flock`, pointing to disjoint index sets instead."""
    from .manifest import flock_unsupported

    directory.mkdir(parents=True, exist_ok=True)
    try:
        with open(directory / 'manifest.lock', 'a') as f:
            fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
            fcntl.flock(f, fcntl.LOCK_UN)
    except BlockingIOError:
        pass  # another process holds it: flock works
    except OSError as err:
        if flock_unsupported(err):
            raise RuntimeError(
                f"The filesystem of {directory} does not support flock ({err.strerror}): concurrent generators cannot "
                f"coordinate there. Give each job a disjoint set of sims instead: phiml-data generate --shard I/N "
                f"(SLURM arrays: see scripts/slurm_generate.sbatch)."
            ) from None
        raise


def _as_completed(executor, futures):
    """`as_completed` for both `concurrent.futures` and `dask.distributed` futures."""
    if hasattr(executor, 'gather'):  # dask.distributed.Client
        from distributed import as_completed

        return as_completed(list(futures))
    from concurrent.futures import as_completed

    return as_completed(futures)

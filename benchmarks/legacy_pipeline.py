"""The legacy torch pipeline, rebuilt as the baseline for comparisons (benchmarks and tests only).

Legacy: per-sim `torch.save` caches `{'tensor_data': {field: Tensor[C, T, H, W]}, 'metadata': {...}}`, all loaded into
memory, a window `Dataset` returning `(initial [C_in, H, W], targets [n_targets, C_out, H, W])`, a torch
`DataLoader`, and a training step on raw torch tensors.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset

from phiml_data.legacy import phiml_to_legacy


def write_legacy_caches(manager, sims, directory) -> list[Path]:
    """Writes the cached sims `sims` of `manager` in the legacy format; returns the files."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    files = []
    for s in sims:
        sim = manager.load_phiml_cache(s)
        data = {k: torch.from_numpy(phiml_to_legacy(v, manager.scenario.spatial_dims).copy()) for k, v in sim.items()}
        files.append(directory / f'sim_{s:06d}.pt')
        torch.save({'tensor_data': data, 'metadata': {'sim_index': s, 'dt': sim.metadata['dt']}}, files[-1])
    return files


class LegacyWindowDataset(Dataset):
    """The legacy sliding-window dataset: everything in memory, one window per `__getitem__`.

    Channels are stacked in field order (vector components first), as `PhiMLDataset` packs them.
    """

    def __init__(self, files, input_fields, target_fields, n_input=1, n_targets=1, hop=1):
        self.data = [torch.load(f, weights_only=True)['tensor_data'] for f in files]
        self.input_fields, self.target_fields = list(input_fields), list(target_fields)
        self.n_input, self.n_targets = n_input, n_targets
        length = n_input + n_targets
        self.index = [
            (i, t)
            for i, d in enumerate(self.data)
            for t in range(0, d[self.target_fields[0]].shape[1] - length + 1, hop)
        ]

    def __len__(self):
        return len(self.index)

    def __getitem__(self, k):
        i, t = self.index[k]
        d = self.data[i]
        initial = torch.cat([_frame(d[f], t) for f in self.input_fields], 0)  # [C_in, H, W] (n_input == 1)
        targets = torch.stack(
            [
                torch.cat([_frame(d[f], t + self.n_input + j) for f in self.target_fields], 0)
                for j in range(self.n_targets)
            ]
        )
        return initial, targets


def _frame(array: torch.Tensor, t: int) -> torch.Tensor:
    """Frame `t` of a legacy `[C, T, H, W]` array; static fields (`T = 1`) always give their only frame."""
    return array[:, 0] if array.shape[1] == 1 else array[:, t]


def legacy_loader(files, input_fields, target_fields, n_targets, batch_size, num_workers=0, shuffle=False):
    """The legacy `DataLoader` over `LegacyWindowDataset`."""
    ds = LegacyWindowDataset(files, input_fields, target_fields, n_targets=n_targets)
    return DataLoader(
        ds, batch_size=batch_size, shuffle=shuffle, num_workers=num_workers, persistent_workers=num_workers > 0
    )


def legacy_rollout_loss(net, initial, targets, dynamic_channels):
    """The legacy loss: autoregressive rollout MSE on raw torch tensors `[N, C, H, W]` / `[N, T, C, H, W]`."""
    state, loss = initial, 0
    static = initial[:, len(dynamic_channels) :]
    for j in range(targets.shape[1]):
        pred = state[:, : len(dynamic_channels)] + net(state)
        loss = loss + torch.mean((pred - targets[:, j]) ** 2)
        state = torch.cat([pred, static], 1)
    return loss / targets.shape[1]


# --- an independent legacy implementation, for the comparison test (its own network, files, normalisation, order) ---


class LegacyConvNet(torch.nn.Module):
    """The legacy model written in plain torch: `layers` 3x3 circular convolutions with ReLU, then a 1x1 output conv."""

    def __init__(self, in_channels: int, out_channels: int, width: int, layers: int):
        super().__init__()
        convs, c = [], in_channels
        for _ in range(layers):
            convs += [torch.nn.Conv2d(c, width, 3, padding=1, padding_mode='circular'), torch.nn.ReLU()]
            c = width
        self.body = torch.nn.Sequential(*convs)
        self.out = torch.nn.Conv2d(width, out_channels, 1)

    def forward(self, x):
        return self.out(self.body(x))


def copy_weights(source: torch.nn.Module, target: torch.nn.Module):
    """Copies parameters in definition order; every shape must agree."""
    pairs = list(zip(source.parameters(), target.parameters(), strict=True))
    with torch.no_grad():
        for s, t in pairs:
            assert s.shape == t.shape, (s.shape, t.shape)
            t.copy_(s)


def write_legacy_from_simulation(scenario, sims, directory) -> list[Path]:
    """The legacy route: simulate, convert each field to `[C, T, H, W]` and `torch.save` it (not via our cache)."""
    from phiml_data import simulate

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    files = []
    for s, sim in zip(sims, simulate(scenario, sims)):
        data = {'velocity': torch.from_numpy(sim['velocity'].numpy('vector,time,x,y').copy())}
        files.append(directory / f'sim_{s:06d}.pt')
        torch.save({'tensor_data': data, 'metadata': {'sim_index': s, 'dt': scenario.dt}}, files[-1])
    return files


def legacy_scale(files) -> float:
    """The legacy normalisation of a velocity field: one RMS over all components, frames and training files."""
    data = [torch.load(f, weights_only=True)['tensor_data']['velocity'].double() for f in files]
    return float(torch.sqrt(sum((d**2).sum() for d in data) / sum(d.numel() for d in data)))


def legacy_order(n: int, seed: int, epoch: int) -> list[int]:
    """The legacy shuffle: a NumPy permutation seeded by `(seed, epoch)`, as the sampler of the DataLoader."""
    import numpy as np

    return np.random.default_rng([seed, epoch]).permutation(n).tolist()

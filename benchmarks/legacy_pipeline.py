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

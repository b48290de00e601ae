"""Normalisation statistics (`phiml_data.normalization`): round trip, vector scale, scalar shift, where they apply."""

import numpy as np
import pytest

from conftest import arrays
from phiml_data import DataManager, PhiMLDataset, SmokePlume
from phiml_data.normalization import denormalize, normalize
from phiml_data.trainer import ModelConfig, TrainConfig, Trainer


def test_normalisation_round_trip_and_vector_scale(burgers_dm):
    ds = PhiMLDataset(burgers_dm, n_targets=2)
    stats = ds.stats['velocity']
    assert stats['offset'] == 0.0 and stats['scale'] > 0  # vectors: no shift, one scale for all components
    raw = PhiMLDataset(burgers_dm, n_targets=2, normalize=False)
    b_raw, b = next(raw.iterate_batches(4)), next(ds.iterate_batches(4))
    np.testing.assert_allclose(arrays(ds.denormalize(b['targets'])), arrays(b_raw['targets']), rtol=1e-5, atol=1e-6)
    t = b_raw['initial_state']
    np.testing.assert_allclose(arrays(denormalize(normalize(t, ds.stats), ds.stats)), arrays(t), rtol=1e-6, atol=1e-6)
    all_v = np.stack([arrays(burgers_dm.load_phiml_cache(s)['velocity']) for s in ds.sims])
    assert stats['scale'] == pytest.approx(np.sqrt(np.mean(all_v.astype(np.float64) ** 2)), rel=1e-6)
    stats_files = list(burgers_dm.directory.glob('stats-*.json'))
    assert stats_files and burgers_dm.key in stats_files[0].read_text()


def test_scalar_fields_are_shifted_by_their_mean(tmp_path):
    dm = DataManager(tmp_path, SmokePlume(resolution=16, steps=3))
    dm.generate(1, progress=False)
    ds = PhiMLDataset(dm, n_targets=1)
    density = arrays(dm.load_phiml_cache(0)['density']).astype(np.float64)
    assert ds.stats['density']['offset'] == pytest.approx(density.mean()) and ds.stats['density'][
        'scale'
    ] == pytest.approx(density.std())


def test_validation_set_with_its_own_statistics_is_refused(dm):
    train = PhiMLDataset(dm, [0, 1], n_targets=1)
    with pytest.raises(ValueError, match=r'validation dataset normalises with other statistics.*stats=train.stats'):
        Trainer(
            train,
            PhiMLDataset(dm, [2], n_targets=1),
            ModelConfig('conv_net', filters=4, layers=1),
            TrainConfig(progress=False),
        )
    Trainer(
        train,
        PhiMLDataset(dm, [2], n_targets=1, stats=train.stats),
        ModelConfig('conv_net', filters=4, layers=1),
        TrainConfig(progress=False),
    )

"""`phiml_data.architectures`: one registered function per network; a new one is usable from a config at once."""

import pytest

from phiml_data.architectures import ARCHITECTURES, Architecture, register
from phiml_data.config import ModelConfig


def test_a_registered_architecture_is_accepted_by_the_config_and_built_by_the_trainer():
    from phiml_data.backends import backend_named
    from phiml_data.trainer import build_network

    def one_conv(model, in_channels, out_channels, common):
        from phiml import nn

        return nn.conv_net(in_channels, out_channels, layers=[], **common)

    with ARCHITECTURES.temporarily('one_conv', Architecture(one_conv)):
        with backend_named('torch'):
            net = build_network(ModelConfig(architecture='one_conv'), 2, 3, 2, periodic=True)
        assert type(net).__module__.startswith('phiml.backend.torch')
    with pytest.raises(
        ValueError, match=r"ModelConfig.architecture: unknown architecture 'one_conv'; valid: \[.*'u_net'"
    ):
        ModelConfig(architecture='one_conv')


def test_a_second_architecture_under_a_taken_name_is_refused():
    with pytest.raises(ValueError, match=r"an architecture named 'u_net' is registered already"):
        register('u_net')(lambda model, i, o, common: None)


def test_backend_limits_travel_with_the_architecture():
    with pytest.raises(ValueError, match='res_net is a different network'):
        ModelConfig(architecture='res_net').check_backend('jax')
    ModelConfig(architecture='conv_net', layers=1).check_backend('jax')
    ModelConfig(architecture='res_net').check_backend('torch')

"""Network architectures the trainer can build, one registered function each (the `model.architecture` names).

Step 4 of the pipeline (... -> dataset -> trainer). Names and backend limits are known without importing
`phiml.nn` (so loading a config stays light); the builders import it when called.

Adding an architecture is one `@register('name')`ed builder function here (or in any module imported before the
config is loaded); `tests/test_registries.py` then builds it and checks its output. A throwaway registration, as in
an example or a test:

    >>> def tiny_conv(model, in_channels, out_channels, common):
    ...     from phiml import nn
    ...     return nn.conv_net(in_channels, out_channels, layers=[model.filters], **common)
    >>> with ARCHITECTURES.temporarily('tiny_conv', Architecture(tiny_conv)):
    ...     'tiny_conv' in ARCHITECTURES
    True
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from .registry import Registry


@dataclass(frozen=True)
class Architecture:
    """A registered network: `build(model: ModelConfig, in_channels, out_channels, common: dict)` returns the
    `phiml.nn` network (`common`: batch_norm, activation, in_spatial, periodic); `refuse(model, backend)` returns why
    the config cannot mean the same network on `backend`, or None."""

    build: Callable
    refuse: Callable = lambda model, backend: None


ARCHITECTURES: Registry[Architecture] = Registry('architecture')  # by `model.architecture`


def register(name: str, refuse: Callable = None):
    """Decorator: registers a builder function under `name` (see `Architecture`; refused if the name is taken)."""
    return ARCHITECTURES.register(name, make=lambda build: Architecture(build, refuse or Architecture.refuse))


@register('u_net')
def u_net(model, in_channels: int, out_channels: int, common: dict):
    from phiml import nn

    return nn.u_net(in_channels, out_channels, levels=model.levels, filters=model.filters, **common)


def _res_net_on_jax(model, backend):
    if backend == 'jax':
        return (
            "res_net is a different network on phiml 1.16.1's jax backend (2130 vs 1946 parameters for the same "
            "config on torch); use u_net or conv_net, or the torch backend"
        )


@register('res_net', refuse=_res_net_on_jax)
def res_net(model, in_channels: int, out_channels: int, common: dict):
    from phiml import nn

    return nn.res_net(in_channels, out_channels, layers=[model.filters] * model.layers, **common)


def _deep_conv_net_on_jax(model, backend):
    if backend == 'jax' and model.layers > 1:
        return (
            "conv_net with layers > 1 does not build on phiml 1.16.1's jax backend (KeyError 'conv2'); use u_net "
            "or conv_net with layers: 1"
        )


@register('conv_net', refuse=_deep_conv_net_on_jax)
def conv_net(model, in_channels: int, out_channels: int, common: dict):
    from phiml import nn

    return nn.conv_net(in_channels, out_channels, layers=[model.filters] * model.layers, **common)


def zero_output(net):
    """Sets the weights and bias of `net`'s output layer to zero, so that it predicts exactly zero until it learns:
    a network that corrects a base starts as the base itself. The output layer is the last registered child module
    (torch) or parameter group (jax) of phiml's u_net, res_net and conv_net, and of any network built the same way.

    Raises:
        ValueError: The last part of `net` holds no weights to zero.
    """
    if hasattr(net, 'children'):  # torch
        import torch

        last = list(net.children())[-1]
        if not hasattr(last, 'weight'):
            raise ValueError(f"the last module of {type(net).__name__} ({type(last).__name__}) has no weights to zero")
        with torch.no_grad():
            for p in last.parameters():
                p.zero_()
        return net
    import jax

    last = list(net.parameters)[-1]
    net.parameters = {**net.parameters, last: jax.tree_util.tree_map(lambda a: a * 0, net.parameters[last])}
    return net

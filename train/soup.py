"""One network from several: the mean of their weights (a "model soup").

Why: runs fine-tuned from one start with different seeds land in one basin (their mean-weight
network scores at least as well as either on the val ladders), and one seed's draw moves the
measuring stick as far as a change of recipe does. Averaging the runs' tensors keeps one
network's scoring cost, where an ensemble pays for every member (Wortsman et al., "Model
soups", ICML 2022). Only networks of one architecture can be averaged, and only tensors that
are learned: integer buffers must agree, so a mismatch is an error, never a silent mix.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch

from mediqa_cli.model.network import MedIQANet


def average_networks(nets: Sequence[MedIQANet]) -> MedIQANet:
    """A new network whose every floating-point tensor is the mean of `nets`' tensors."""
    if not nets:
        raise ValueError("no networks to average")
    configs = {repr(n.config.to_dict()) for n in nets}
    if len(configs) > 1:
        raise ValueError("networks of different configs cannot be averaged")
    states = [n.state_dict() for n in nets]
    keys = list(states[0])
    if any(list(s) != keys for s in states[1:]):
        raise ValueError("networks with different tensors cannot be averaged")
    mean = {}
    for key in keys:
        tensors = [s[key] for s in states]
        if any(t.shape != tensors[0].shape for t in tensors[1:]):
            raise ValueError(f"{key}: shapes differ, {[tuple(t.shape) for t in tensors]}")
        if tensors[0].is_floating_point():
            mean[key] = torch.stack([t.double() for t in tensors]).mean(0).to(tensors[0].dtype)
        elif all(torch.equal(t, tensors[0]) for t in tensors[1:]):
            mean[key] = tensors[0].clone()
        else:
            raise ValueError(f"{key}: integer tensors differ and cannot be averaged")
    out = copy.deepcopy(nets[0])
    out.load_state_dict(mean)
    return out.eval()


__all__ = ["average_networks"]

"""float32 linear layers on CPU through oneDNN, with weights packed once.

PyTorch's float32 ``F.linear`` on CPU calls MKL's sgemm, and MKL picks its
code paths by CPU vendor.  oneDNN, which ships inside the same PyTorch wheel
(``torch.compile``'s CPU freezing pass uses this very op), picks them by
instruction set.  On the 2-core AMD EPYC (Zen 4) machine CI uses, all of
SmolLM2-135M's linear layers plus its LM head took (``bench/bench_generation.py``
measures the effect end to end):

    tokens per call     1      48     128    880
    MKL (ms)           52     122     259   1495
    oneDNN packed      29      82     188   1264

The two libraries sum in different orders, so logits differ in the last bits
(like a different batch size does); greedy completions of the demo and of the
tests stayed identical.
"""

from __future__ import annotations

import types

import torch


def _packed_forward(self: torch.nn.Linear, x: torch.Tensor) -> torch.Tensor:
    return torch.ops.mkldnn._linear_pointwise(x, self.packed_weight, self.bias, "none", [], "")


def available() -> bool:
    """Whether this PyTorch has oneDNN's packed linear and it agrees with ``F.linear`` on a probe.

    The op is internal to PyTorch (``torch.ops.mkldnn``), so it is probed, not assumed.
    """
    if not (torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")):
        return False
    gen = torch.Generator().manual_seed(0)
    w, x = torch.randn(48, 64, generator=gen), torch.randn(3, 5, 64, generator=gen)
    try:
        out = torch.ops.mkldnn._linear_pointwise(x, torch.ops.mkldnn._reorder_linear_weight(w), None, "none", [], "")
    except RuntimeError:
        return False
    return bool(torch.allclose(out, torch.nn.functional.linear(x, w), rtol=1e-4, atol=1e-4))


def pack_linears(model: torch.nn.Module) -> int:
    """Run every plain ``nn.Linear`` of a CPU float32 ``model`` through oneDNN; returns how many.

    A weight no other module shares is replaced by its packed copy (no extra
    memory, and no dense use of it is possible afterwards); a tied weight
    (an LM head that is also the input embedding) stays and a packed copy is
    added beside it.  Returns 0, changing nothing, when the model is not on
    the CPU in float32 or :func:`available` is False.  Subclasses of
    ``nn.Linear`` (quantized layers, adapters) are left alone.
    """
    linears = [m for m in model.modules() if type(m) is torch.nn.Linear]
    if not linears or any(m.weight.device.type != "cpu" or m.weight.dtype != torch.float32 for m in linears):
        return 0
    if not available():
        return 0
    owners: dict[int, int] = {}
    for m in model.modules():
        for p in m.parameters(recurse=False):
            owners[id(p)] = owners.get(id(p), 0) + 1
    with torch.no_grad():
        for m in linears:
            packed = torch.ops.mkldnn._reorder_linear_weight(m.weight.detach())
            if owners[id(m.weight)] == 1:
                m.weight = packed = torch.nn.Parameter(packed, requires_grad=False)
            m.__dict__["packed_weight"] = packed  # a plain attribute: not a second parameter
            m.forward = types.MethodType(_packed_forward, m)
    return len(linears)

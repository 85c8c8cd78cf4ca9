"""The layers a :class:`~tuneforge.inference.adapters.SharedEncoder` puts into its base model so that each row of a
mixed batch runs with its own run's weights: :class:`MixedHead` (a task head per adapter) and :class:`MixedLoRA`
(the LoRA matrices of every adapter of one linear layer, stacked)."""

from __future__ import annotations

import copy
from typing import Any

__all__ = ["MixedHead", "MixedLoRA", "Rows", "install_heads"]


# --- per-adapter task heads ---------------------------------------------------------------------------------------


def _module_nbytes(module: Any) -> int:
    return int(sum(p.numel() * p.element_size() for p in module.parameters()))


class MixedHead:
    """Stands in for one head module of the base model (the classifier, BERT's pooler): holds each adapter's own
    copy of it and runs each row of a batch through its adapter's copy (:attr:`rows`, set before each forward).
    Outputs of different widths (classifiers of different label sets) are padded with zeros to the widest.

    The copies live in a plain dict, not as submodules, so that peft never puts LoRA layers into them."""

    def __init__(self, original: Any) -> None:
        import torch

        class _Module(torch.nn.Module):
            def forward(inner, x: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805 - the module's self
                return self._forward(x, *args, **kwargs)

        self.module = _Module()
        self.original = original.eval()
        self.heads: dict[str, Any] = {}
        self.rows: list[str] = []

    def add(self, name: str, state: dict[str, Any]) -> int:
        """Adapter ``name``'s copy of the head, with the saved tensors in ``state`` (names relative to the head);
        an adapter that saved none of it uses the base model's. Returns the bytes the copy holds."""
        import torch

        if not state:
            self.heads[name] = self.original
            return 0
        head = copy.deepcopy(self.original)
        for key, tensor in state.items():
            *path, leaf = key.split(".")
            owner = head.get_submodule(".".join(path)) if path else head
            value = tensor.detach().clone()
            if leaf in owner._parameters:
                owner._parameters[leaf] = torch.nn.Parameter(value, requires_grad=False)
            else:
                owner._buffers[leaf] = value
            if isinstance(owner, torch.nn.Linear):  # a head of another label set: keep its shape attributes true
                owner.out_features, owner.in_features = owner.weight.shape
        self.heads[name] = head.eval()
        return _module_nbytes(head)

    def remove(self, name: str) -> None:
        self.heads.pop(name, None)

    def _forward(self, x: Any, *args: Any, **kwargs: Any) -> Any:
        import torch

        rows = self.rows
        groups: dict[str, list[int]] = {}
        for i, n in enumerate(rows):
            groups.setdefault(n, []).append(i)
        if len(groups) == 1:
            return self.heads[rows[0]](x, *args, **kwargs)
        outs = [(idx, self.heads[n](x[idx], *args, **kwargs)) for n, idx in groups.items()]
        width = max(o.shape[-1] for _, o in outs)
        first = outs[0][1]
        out = first.new_zeros((len(rows), *first.shape[1:-1], width))
        for idx, o in outs:
            out[torch.as_tensor(idx), ..., : o.shape[-1]] = o
        return out


# --- per-adapter LoRA updates, stacked ----------------------------------------------------------------------------


class Rows:
    """The adapter slot of each row of the batch running now (set by :class:`SharedEncoder` before each forward)."""

    def __init__(self) -> None:
        self.slots: Any = None  # a long tensor, one slot per row
        self.single: int | None = None  # the slot when every row has the same one


class MixedLoRA:
    """Stands in for one linear layer of the base model: the layer, plus the LoRA matrices of every loaded adapter
    that adapts it, stacked by adapter slot and stored ready to multiply: ``A`` (slots x in x rank, lora_A
    transposed) and ``B`` (slots x rank x out, lora_B transposed and scaled), ranks padded with zeros; the slot of an
    adapter that leaves this layer alone is all zeros. Each row gets its slot's update, ``x A B``, added in place:
    two matrix products for a batch of one adapter, two batched ones (after gathering each row's pair) otherwise."""

    GROW = 8

    def __init__(self, linear: Any, rows: Rows) -> None:
        import torch

        class _Module(torch.nn.Module):
            def forward(inner, x: Any) -> Any:  # noqa: N805 - the module's self
                return self._forward(x)

        self.module = _Module()
        self.linear = linear
        self.rows = rows
        self.A = torch.zeros((0, linear.in_features, 0))
        self.B = torch.zeros((0, 0, linear.out_features))

    def fit(self, slots: int, rank: int = 0) -> None:
        """Room for ``slots`` adapters of up to ``rank``."""
        import torch

        n, r = self.A.shape[0], self.A.shape[2]
        if slots <= n and rank <= r:
            return
        n2, r2 = (slots + self.GROW if slots > n else n), max(r, rank)
        A = torch.zeros((n2, self.A.shape[1], r2))
        B = torch.zeros((n2, r2, self.B.shape[2]))
        A[:n, :, :r], B[:n, :r] = self.A, self.B
        self.A, self.B = A, B

    def set(self, slot: int, a: Any, b: Any, scaling: float) -> None:
        """Slot ``slot`` holds ``lora_A`` (rank x in) and ``lora_B`` (out x rank) with their scaling."""
        rank = int(a.shape[0])
        self.fit(slot + 1, rank)
        self.clear(slot)
        self.A[slot, :, :rank] = a.T
        self.B[slot, :rank] = b.T * scaling

    def clear(self, slot: int) -> None:
        if slot < self.A.shape[0]:
            self.A[slot].zero_()
            self.B[slot].zero_()

    def _forward(self, x: Any) -> Any:
        import torch

        out = self.linear(x)
        rows = self.rows
        if self.A.shape[2] == 0:
            return out
        if rows.single is not None:
            s = rows.single
            flat = out.view(-1, out.shape[-1])
            flat.addmm_(x.reshape(-1, x.shape[-1]) @ self.A[s], self.B[s])
            return out
        A, B = self.A.index_select(0, rows.slots), self.B.index_select(0, rows.slots)
        out3 = out.view(out.shape[0], -1, out.shape[-1])
        out3.baddbmm_(torch.bmm(x.reshape(x.shape[0], -1, x.shape[-1]), A), B)
        return out


def install_heads(model: Any) -> dict[str, MixedHead]:
    """Replace the head modules of a task model (those every method trains and saves: see
    :func:`~tuneforge.methods.common.head_module_names`) by :class:`MixedHead` stand-ins, by module name."""
    from tuneforge.methods.common import head_module_names

    heads: dict[str, MixedHead] = {}
    for name in head_module_names(model):
        *path, leaf = name.split(".")
        parent = model.get_submodule(".".join(path)) if path else model
        mixed = MixedHead(getattr(parent, leaf))
        setattr(parent, leaf, mixed.module)
        heads[name] = mixed
    return heads

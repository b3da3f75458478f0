"""AdamW for the trainer, on torch's functional AdamW kernel.

``torch.optim.AdamW`` imports ``torch._dynamo`` when it is built (its methods are wrapped to keep
the compiler out), which costs about 1.1 s of a 9 s `sa3df features` run on this project's CPU.
:class:`AdamW` keeps the same state and calls the same functional kernel
(``torch.optim.adamw.adamw``, fused on CPU and CUDA), so its steps are bit-identical to
``torch.optim.AdamW(fused=True)`` and its ``state_dict`` has the same form, which the resumable
checkpoints store.
"""

from __future__ import annotations

import torch
from torch.optim.adamw import adamw


class AdamW:
    """Decoupled-weight-decay Adam over ``params`` (one group), without amsgrad or gradient scaling."""

    def __init__(self, params, lr: float, weight_decay: float = 0.01, betas=(0.9, 0.999), eps: float = 1e-8,
                 fused: bool = False):
        self.params = [p for p in params if p.requires_grad]
        self.param_groups = [{"lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay,
                              "amsgrad": False, "maximize": False, "foreach": None, "capturable": False,
                              "differentiable": False, "fused": bool(fused),
                              "params": list(range(len(self.params)))}]
        self.exp_avgs = [torch.zeros_like(p, memory_format=torch.preserve_format) for p in self.params]
        self.exp_avg_sqs = [torch.zeros_like(p, memory_format=torch.preserve_format) for p in self.params]
        # fused kernels take their step counts on the parameters' device (as torch.optim.AdamW keeps them)
        self.steps = [torch.zeros((), dtype=torch.float32, device=p.device if fused else "cpu") for p in self.params]

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            if set_to_none:
                p.grad = None
            elif p.grad is not None:
                p.grad.zero_()

    @torch.no_grad()
    def step(self) -> None:
        group = self.param_groups[0]
        live = [i for i, p in enumerate(self.params) if p.grad is not None]  # as torch: no grad, no step
        params = [self.params[i] for i in live]
        beta1, beta2 = group["betas"]
        adamw(params, [p.grad for p in params], [self.exp_avgs[i] for i in live], [self.exp_avg_sqs[i] for i in live],
              [], [self.steps[i] for i in live], fused=group["fused"] or None, amsgrad=False, beta1=beta1,
              beta2=beta2, lr=group["lr"], weight_decay=group["weight_decay"], eps=group["eps"], maximize=False)

    def state_dict(self) -> dict:
        """torch.optim's form: per parameter index its step and moments, and the one group's settings."""
        state = {i: {"step": s, "exp_avg": m, "exp_avg_sq": v}
                 for i, (s, m, v) in enumerate(zip(self.steps, self.exp_avgs, self.exp_avg_sqs)) if s.item() > 0}
        return {"state": state, "param_groups": [dict(self.param_groups[0])]}

    def load_state_dict(self, data: dict) -> None:
        (group,) = data["param_groups"]
        self.param_groups[0].update({k: group[k] for k in ("lr", "eps", "weight_decay") if k in group})
        self.param_groups[0]["betas"] = tuple(group.get("betas", self.param_groups[0]["betas"]))
        for index, values in data["state"].items():
            i = int(index)
            self.steps[i].copy_(torch.as_tensor(values["step"], dtype=torch.float32))
            self.exp_avgs[i].copy_(values["exp_avg"])
            self.exp_avg_sqs[i].copy_(values["exp_avg_sq"])

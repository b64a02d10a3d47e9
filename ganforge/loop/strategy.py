"""DDP that works for GANs: G and D in separate DDP wrappers.

Lightning's DDP wraps the whole LightningModule in one ``DistributedDataParallel``. In a GAN
each backward uses only G's or only D's parameters, so that wrapper fails ("Expected to have
finished reduction in the prior iteration", Lightning #20328, #20866) unless
``find_unused_parameters=True``, which walks the autograd graph and all-reduces the
gradients of *both* networks after every backward.

Here, as in StyleGAN2-ADA's training loop, G and D get a DDP wrapper each
(``module.ddp["generator"]``, ``module.ddp["discriminator"]``). The loop calls the wrapper of
the network it trains and the raw module of the frozen one, so each backward all-reduces
exactly the parameters it produced gradients for. The raw modules stay the LightningModule's
registered submodules: checkpoints, EMA and metrics see plain modules.

BatchNorm: ``broadcast_buffers=False`` (broadcasting rank 0's running statistics at every
forward would also overwrite them mid-step). Running statistics are instead **averaged over
ranks before every evaluation and checkpoint** (:meth:`GANModule.sync_buffers`), so what is
evaluated and saved is identical on all ranks. ``trainer.sync_batchnorm: true`` additionally
normalizes with global batch statistics during training (slower; Lightning converts the
layers to ``SyncBatchNorm``).
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any

import torch
from torch.nn.parallel import DistributedDataParallel

from lightning.pytorch.overrides.distributed import _register_ddp_comm_hook, _sync_module_states
from lightning.pytorch.strategies import DDPStrategy, StrategyRegistry

FORBIDDEN = {
    "find_unused_parameters": "G and D are wrapped separately, so every backward uses all wrapped parameters",
    "static_graph": "the G and D graphs alternate; a static graph does not apply",
}


class GANDDPStrategy(DDPStrategy):
    """DDP with separate wrappers for the generator and the discriminator.

    Accepts :class:`lightning.pytorch.strategies.DDPStrategy`'s arguments (process group
    backend, timeout, DDP kwargs such as ``bucket_cap_mb`` or ``gradient_as_bucket_view``,
    communication hooks) except ``find_unused_parameters`` and ``static_graph``.
    """

    strategy_name = "gan_ddp"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        for key, why in FORBIDDEN.items():
            if kwargs.get(key):
                raise ValueError(f"GANDDPStrategy: {key}=True is not supported ({why}).")
            kwargs.pop(key, None)
        kwargs.pop("broadcast_buffers", None)
        super().__init__(*args, **kwargs)

    def _wrap(self, module: torch.nn.Module) -> DistributedDataParallel:
        device_ids = self.determine_ddp_device_ids()
        ctx = torch.cuda.stream(torch.cuda.Stream()) if device_ids is not None else nullcontext()
        # No buffer broadcast at every forward (torch >= 2.13 spells it forward_sync_buffers);
        # the initial sync from rank 0 still happens.
        import inspect

        sync_kw = ("forward_sync_buffers" if "forward_sync_buffers" in
                   inspect.signature(DistributedDataParallel.__init__).parameters else "broadcast_buffers")
        with ctx:
            ddp = DistributedDataParallel(module=module, device_ids=device_ids, find_unused_parameters=False,
                                          **{sync_kw: False}, **self._ddp_kwargs)
        if self._ddp_comm_hook is not None:
            _register_ddp_comm_hook(model=ddp, ddp_comm_state=self._ddp_comm_state,
                                    ddp_comm_hook=self._ddp_comm_hook,
                                    ddp_comm_wrapper=self._ddp_comm_wrapper)
        return ddp

    def configure_ddp(self) -> None:
        from ganforge.loop.module import GANModule

        module = self.lightning_module
        if not isinstance(module, GANModule):
            raise TypeError(f"GANDDPStrategy trains a ganforge.GANModule, got {type(module).__name__}; use "
                            "Lightning's own DDPStrategy for other modules.")
        # self.model stays the LightningModule: Lightning then calls training_step directly and
        # its manual-optimization DDP bookkeeping (prepare_for_backward on one wrapper) stays off.
        module.ddp = {"generator": self._wrap(module.generator), "discriminator": self._wrap(module.discriminator)}
        if module.generator_ema is not None:
            _sync_module_states(module.generator_ema)  # DDP broadcast G and D from rank 0; the EMA too

    def teardown(self) -> None:
        module = self.lightning_module
        if module is not None and hasattr(module, "ddp"):
            module.ddp = {}
        super().teardown()

    @classmethod
    def register_strategies(cls, strategy_registry: Any) -> None:
        # ganforge fit builds the strategy itself (trainer.strategy=gan_ddp); the name also serves a
        # plain lightning.Trainer(strategy="gan_ddp") once this module is imported.
        strategy_registry.register("gan_ddp", cls, description="ganforge: G and D in separate DDP wrappers",
                                   start_method="popen", override=True)


GANDDPStrategy.register_strategies(StrategyRegistry)

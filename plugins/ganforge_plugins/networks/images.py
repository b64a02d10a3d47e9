"""The image networks plugin: ``dcgan``, ``resnet`` and ``biggan``, each a generator and a discriminator.

One module per family (``dcgan.py``, ``resnet.py``, ``biggan.py``, shared parts in ``layers.py``);
the conventions they share (square power-of-two images from 8 to 128 px, conditioning on class
labels or continuous conditions, initialisation) are in docs/networks.md.
"""

from __future__ import annotations

from ganforge import Register, hookimpl
from ganforge_plugins.networks.biggan import biggan_discriminator, biggan_generator
from ganforge_plugins.networks.dcgan import dcgan_discriminator, dcgan_generator
from ganforge_plugins.networks.resnet import resnet_discriminator, resnet_generator

GANFORGE_PLUGIN_API = 2  # the ganforge plugin API this module is written for


@hookimpl
def ganforge_register_generators(register: Register) -> None:
    register("dcgan", dcgan_generator, description="DCGAN generator (Radford et al. 2016) for square images, 8-128 px.")
    register("resnet", resnet_generator, description="SNGAN ResNet generator (Miyato et al. 2018), 8-128 px.")
    register("biggan", biggan_generator, description="Small-scale BigGAN generator (Brock et al. 2019), 8-128 px.")


@hookimpl
def ganforge_register_discriminators(register: Register) -> None:
    register("dcgan", dcgan_discriminator, description="DCGAN discriminator (Radford et al. 2016), BN or spectral norm.")
    register("resnet", resnet_discriminator, description="SNGAN ResNet discriminator with projection (Miyato et al. 2018).")
    register("biggan", biggan_discriminator, description="Small-scale BigGAN projection discriminator (Brock et al. 2019).")

"""ganforge-astro: Cherenkov-telescope (IACT) images for ganforge, built on ctapipe.

Registers, through the ``ganforge`` entry-point group:

* datasets ``iact-toy`` (a seeded toy simulator) and ``iact-file`` (``.npz`` and ctapipe DL1 HDF5 files);
* metrics ``hillas`` (Hillas-parameter distances with the real-vs-real floor), ``size-energy`` and
  ``acceptance`` (a gamma/hadron classifier's verdict on generated gammas), ``generation-speed`` (images/s
  of the generator vs the toy simulator);
* constraints ``size-energy``, ``non-negative``, ``survives-cleaning`` and ``points-to-source`` (physics
  penalties on generated images for the ``constrained`` objective);
* the generator ``iact-rotated`` (any base generator's images turned about the camera centre by an angle
  drawn from the noise: the rotational symmetry of a centred source, built into the network) and the
  discriminator ``iact-canonical`` (any base discriminator judging every image turned and reflected into one
  sector of the hexagonal camera, so its verdict has the same symmetry).

Heavy imports (ctapipe, astropy) happen inside the factories' modules, which the hooks import only
when ganforge asks for the registrations.
"""

from __future__ import annotations

from ganforge import Register, hookimpl

__version__ = "0.1.0"
GANFORGE_PLUGIN_API = 2  # built for the plugin API of ganforge 0.1 after the layout move (issue 8)


@hookimpl
def ganforge_register_generators(register: Register) -> None:
    from ganforge_astro.networks import iact_rotated

    register("iact-rotated", iact_rotated, description="a base generator's IACT images turned about the camera "
             "centre by an angle drawn from the noise (rotational symmetry of a centred source)")


@hookimpl
def ganforge_register_discriminators(register: Register) -> None:
    from ganforge_astro.networks import iact_canonical

    register("iact-canonical", iact_canonical, description="a base discriminator that judges IACT images turned "
             "(and reflected) into one sector of the hexagonal camera (its symmetries, exact permutations)")


@hookimpl
def ganforge_register_datasets(register: Register) -> None:
    from ganforge_astro.files import iact_file
    from ganforge_astro.toy import iact_toy

    register("iact-toy", iact_toy, description="toy Cherenkov-telescope images (gamma/proton, ctapipe toymodel) "
             "on a 559-pixel hexagonal camera, conditioned on log10 E and particle type")
    register("iact-file", iact_file, description="IACT images with energies and particle types from .npz or "
             "ctapipe DL1 HDF5 files")


@hookimpl
def ganforge_register_metrics(register: Register) -> None:
    from ganforge_astro.metrics import acceptance, generation_speed, hillas, size_energy

    register("hillas", hillas, description="Hillas-parameter W1/KS of generated vs real IACT images per energy bin, "
             "with the real-vs-real floor (ctapipe)")
    register("size-energy", size_energy, description="relative error of the median generated image size per "
             "particle and energy bin, with the real-vs-real floor")
    register("acceptance", acceptance, description="fraction of generated gamma images a gamma/hadron classifier "
             "(trained on iact-toy, shipped) accepts, next to the real gammas' fraction")
    register("generation-speed", generation_speed, description="images/s of the generator (decoded to pixels) vs "
             "the toy simulator (with cleaning and Hillas) on the same machine, and vs the published ~400/s")


@hookimpl
def ganforge_register_constraints(register: Register) -> None:
    from ganforge_astro.constraints import non_negative, points_to_source, size_energy, survives_cleaning

    register("size-energy", size_energy, description="generated image size must follow the training data's "
             "size-energy relation per particle type (calibrated, stored with the run)")
    register("non-negative", non_negative, description="no camera pixel below the lowest amplitude a real image "
             "has (calibrated, or min_pe)")
    register("survives-cleaning", survives_cleaning, description="the image must survive ctapipe tail-cuts "
             "cleaning (a differentiable surrogate, exact for the default thresholds)")
    register("points-to-source", points_to_source, description="images of one particle type (gammas) must point "
             "to the source at the camera centre: Hillas alpha within the training data's (calibrated)")

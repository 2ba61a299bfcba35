"""Datasets and data generation.

* ``bvh``: BVH parser + forward kinematics; ``mocap``: Bandai-Namco clips -> H36M-17 pose cache + split;
* ``poses``: pose sources (mocap cache, procedural); ``cameras``: virtual camera sampling;
* ``noise2d``: 2D detector error model; ``render``: numpy capsule-person renderer;
* ``dataset``: the synthetic training dataset (pose + camera + noise + rendered crop -> model inputs);
* ``h36m`` / ``mpi_inf_3dhp``: evaluation datasets in their public array formats.

Submodules import their heavy dependencies themselves; importing this package is free.
"""

"""Training: :class:`TrainConfig` (YAML over frozen dataclasses), losses, and the two-phase trainer.

``lbi train CONFIG [key=value ...]`` is the entry point (:mod:`lbi_ros.cli.train`); it calls
:func:`lbi_ros.training.trainer.train`. Validation goes through :mod:`lbi_ros.evaluation`, the same code as
``lbi eval``.
"""

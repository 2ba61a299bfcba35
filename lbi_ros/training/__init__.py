"""Training: :class:`TrainConfig` (YAML over frozen dataclasses), losses, and the two-phase trainer.

``lbi train CONFIG [key=value ...]`` is the entry point (:mod:`lbi_ros.cli.train`); it calls
:func:`lbi_ros.training.trainer.train`. The feature-cache path (issue 18: frozen pose backbone, ``lbi features`` / ``lbi train-cached``) lives in
:mod:`~lbi_ros.training.feature_cache`, :mod:`~lbi_ros.training.cached_data` and
:mod:`~lbi_ros.training.cached_trainer`. Validation goes through :mod:`lbi_ros.evaluation`, the same code as
``lbi eval``.
"""

"""Run folders: a folder one run owns, identified by its settings, resumed from what exists.

:mod:`~samwsss.runs.folder` (``RunFolder``, ``check_writable``: labelling runs, ``predict``
and training), its locks (:mod:`~samwsss.runs.lock`, :mod:`~samwsss.runs.lease`) and
failure log (:mod:`~samwsss.runs.failures`); the labelling runs over a dataset
(:mod:`~samwsss.runs.runner`, :mod:`~samwsss.runs.ray_engine`, :mod:`~samwsss.runs.writers`,
:mod:`~samwsss.runs.finish`). This package imports nothing itself (no torch for the light
modules).
"""

"""Training and prediction for every segmenter architecture (DeepLabV2 the survey's one).

Modules (import them directly; this package imports nothing itself):

- :mod:`samwsss.training.config` -- ``TrainConfig`` (one config for every architecture;
  DeepLabV2's defaults are the survey's recipe), YAML, overrides.
- :mod:`samwsss.training.transforms` -- ``TrainAugmentation``, ``normalize_batch``.
- :mod:`samwsss.training.data` -- ``PseudoMaskDataset``, ``SampleStream``,
  ``AugmentedSegmentationData``.
- :mod:`samwsss.training.train` -- ``Trainer`` / ``train_segmenter``, every architecture
  (DDP, bf16, resume).
- :mod:`samwsss.training.optim` -- ``build_arch_optimizer``, ``arch_forward_loss``,
  ``set_learning_rates`` (poly); re-exports DeepLabV2's ``deeplab_param_groups`` and
  ``deeplab_loss``.
- :mod:`samwsss.training.distributed` -- ``DistributedContext``, process group set-up and
  teardown, the DDP wrapper.
- :mod:`samwsss.training.guard` -- ``DivergenceGuard`` (stops a run whose loss becomes
  non-finite or explodes, before it saves anything) and its ``TrainingDiverged`` error.
- :mod:`samwsss.training.state` -- training checkpoints (save, load, resume checks) and the
  RNG states they carry.
- :mod:`samwsss.training.logs` -- ``train_log.csv`` / ``val_log.csv`` and
  ``training_curve.png``.
- :mod:`samwsss.training.predict` -- ``load_checkpoint_model``, ``predict_labels``,
  ``predict_dataset``, ``evaluate_model`` (multi-scale + flip).
- :mod:`samwsss.training.prediction_identity` -- the identity that lets ``predict``
  resume a folder only with the same checkpoint, settings and dataset.

The networks live in :mod:`samwsss.segnets`; ``samwsss.deeplab`` is this package's old name.
"""

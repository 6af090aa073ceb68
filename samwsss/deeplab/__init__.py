"""DeepLabV2 (ResNet-101 + ASPP-v2) training and inference on pseudo masks.

Modules (import them directly; this package imports nothing itself):

- :mod:`samwsss.deeplab.config` -- ``DeepLabConfig`` (the survey's recipe), YAML, overrides.
- :mod:`samwsss.deeplab.model` -- re-exports ``DeepLabV2``, ``ASPPV2``, ``build_deeplab``
  (the network, its loss and its architecture live in :mod:`samwsss.segnets.deeplab`).
- :mod:`samwsss.deeplab.transforms` -- ``TrainAugmentation``, ``normalize_batch``.
- :mod:`samwsss.deeplab.data` -- ``PseudoMaskDataset``, ``SampleStream``,
  ``AugmentedSegmentationData``.
- :mod:`samwsss.deeplab.train` -- ``Trainer`` / ``train_segmenter``, every architecture
  (DDP, bf16, resume).
- :mod:`samwsss.deeplab.optim` -- ``build_arch_optimizer``, ``arch_forward_loss``,
  ``set_learning_rates`` (poly); re-exports DeepLabV2's ``deeplab_param_groups`` and
  ``deeplab_loss``.
- :mod:`samwsss.deeplab.distributed` -- ``DistributedContext``, process group set-up and
  teardown, the DDP wrapper.
- :mod:`samwsss.deeplab.guard` -- ``DivergenceGuard`` (stops a run whose loss becomes
  non-finite or explodes, before it saves anything) and its ``TrainingDiverged`` error.
- :mod:`samwsss.deeplab.state` -- training checkpoints (save, load, resume checks) and the
  RNG states they carry.
- :mod:`samwsss.deeplab.logs` -- ``train_log.csv`` / ``val_log.csv`` and
  ``training_curve.png``.
- :mod:`samwsss.deeplab.predict` -- ``load_checkpoint_model``, ``predict_labels``,
  ``predict_dataset``, ``evaluate_model`` (multi-scale + flip).
- :mod:`samwsss.deeplab.prediction_folder` -- the identity file that lets ``predict``
  resume a folder only with the same checkpoint, settings and dataset.
"""

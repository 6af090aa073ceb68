"""Segmentation networks trained on pseudo masks (DeepLabV2, SegFormer, Mask2Former, EoMT),
each behind :class:`samwsss.segnets.arch.SegmentationArch`."""

"""Old name of :mod:`samwsss.training` (the trainer and predictor of every architecture).

``samwsss.deeplab.<module>`` imports keep working: each module here is the same module
object as ``samwsss.training.<module>`` (so patching one patches the other), and importing
it warns once with a :class:`DeprecationWarning`. ``samwsss.deeplab.model`` and
``samwsss.deeplab.archs`` re-export DeepLabV2 and the architecture table from
:mod:`samwsss.segnets`. New code imports :mod:`samwsss.training` and :mod:`samwsss.segnets`.
"""

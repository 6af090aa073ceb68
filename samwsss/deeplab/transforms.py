"""Old name of :mod:`samwsss.training.transforms`."""

from samwsss.deeplab._alias import alias

alias(__name__)

"""Old name of :mod:`samwsss.training.optim`."""

from samwsss.deeplab._alias import alias

alias(__name__)

"""Old name of :mod:`samwsss.training.train`."""

from samwsss.deeplab._alias import alias

alias(__name__)

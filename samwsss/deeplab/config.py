"""Old name of :mod:`samwsss.training.config`."""

from samwsss.deeplab._alias import alias

alias(__name__)

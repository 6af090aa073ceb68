"""Old name of :mod:`samwsss.training.data`."""

from samwsss.deeplab._alias import alias

alias(__name__)

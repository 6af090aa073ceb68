"""Old name of :mod:`samwsss.training.predict`."""

from samwsss.deeplab._alias import alias

alias(__name__)

"""Old name of :mod:`samwsss.training.guard`."""

from samwsss.deeplab._alias import alias

alias(__name__)

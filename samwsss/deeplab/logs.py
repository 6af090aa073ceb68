"""Old name of :mod:`samwsss.training.logs`."""

from samwsss.deeplab._alias import alias

alias(__name__)

"""Old name of :mod:`samwsss.training.state`."""

from samwsss.deeplab._alias import alias

alias(__name__)

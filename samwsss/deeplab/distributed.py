"""Old name of :mod:`samwsss.training.distributed`."""

from samwsss.deeplab._alias import alias

alias(__name__)

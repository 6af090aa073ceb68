"""Old name of :mod:`samwsss.training.prediction_folder`."""

from samwsss.deeplab._alias import alias

alias(__name__)

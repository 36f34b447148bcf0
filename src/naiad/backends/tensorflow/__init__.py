"""The TensorFlow backend (``tensorflow_savedmodel``, ``tensorflow_graphdef``).

Needs the ``naiad[tensorflow]`` extra.
"""

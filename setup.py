"""Build script: the pure-Python package (compiled extensions are added by ``_extensions``)."""

from setuptools import setup

setup()

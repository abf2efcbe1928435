"""The optional native walk (snapper/_nwalk.c): built when a C compiler and Python's headers are present;
otherwise the install goes on and snapper uses the pure-Python walk (``snapper collect`` says so)."""

from setuptools import Extension, setup

setup(ext_modules=[Extension("snapper._nwalk", ["snapper/_nwalk.c"], optional=True,
                             extra_compile_args=["-O2", "-std=gnu11", "-Wall", "-Wno-missing-field-initializers"])])

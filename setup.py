"""Build script: the C core is compiled by cffi in API mode, out of line (csrc/build_ffi.py)."""

from setuptools import setup

setup(
    cffi_modules=["csrc/build_ffi.py:ffibuilder"],
)

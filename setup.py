"""Only for the consumer's optional compiled hot path (everything else is in pyproject.toml).

`pip install -e .` (make install) compiles consumer/_fastline.c with the machine's C compiler; where there is none
the build is skipped (optional=True) and the consumer uses its pure-Python fast engine: same output, more CPU."""

from setuptools import Extension, setup

setup(ext_modules=[Extension("consumer._fastline", ["consumer/_fastline.c"], optional=True,
                             extra_compile_args=["-O2"])])

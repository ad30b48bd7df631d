"""Only for the stored schema's optional compiled hot path (everything else is in pyproject.toml).

`pip install .` (make install) compiles healthpipe/schema/_fastline.c with the machine's C compiler; where there is
none the build is skipped (optional=True) and the sinks use the pure-Python engines: same output, more CPU."""

from setuptools import Extension, setup

setup(ext_modules=[Extension("healthpipe.schema._fastline", ["healthpipe/schema/_fastline.c"], optional=True,
                             extra_compile_args=["-O2"])])

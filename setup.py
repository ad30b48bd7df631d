"""Only for the optional compiled hot paths: the stored schema's and the receiver's (everything else is in
pyproject.toml).

`pip install .` (make install) compiles healthpipe/schema/_fastline.c and healthpipe/receive/_samples.c with the
machine's C compiler; where there is none the build is skipped (optional=True) and the sinks and the receiver use
their pure-Python loops: same output, more CPU."""

from setuptools import Extension, setup

setup(ext_modules=[Extension("healthpipe.schema._fastline", ["healthpipe/schema/_fastline.c"], optional=True,
                             extra_compile_args=["-O2"]),
                   # the receiver's samples loop (healthpipe/receive/decode.py has the same in Python)
                   Extension("healthpipe.receive._samples", ["healthpipe/receive/_samples.c"], optional=True,
                             extra_compile_args=["-O2"])])

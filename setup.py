"""The one compiled part of smevbus: the SMEV transform's C scanner (see
gateway/crypto/_smev_fast.c). Optional: without a C compiler the install goes on, and
gateway.crypto.smev_transform runs its Python implementation (same bytes, slower).
Everything else about the package is in pyproject.toml."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "gateway.crypto._smev_fast",
            ["gateway/crypto/_smev_fast.c"],
            extra_compile_args=["-O2"],
            optional=True,
        )
    ]
)

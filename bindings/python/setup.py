"""Only for the wheel's tag: a wheel that bundles librawstor.so (copied to
rawstor/_lib/ by `make python-wheel`) is tied to the platform but not to a
Python version, as the bindings use ctypes, not the CPython ABI."""

from pathlib import Path

from setuptools import setup
from setuptools.command.bdist_wheel import bdist_wheel

BUNDLED = (Path(__file__).parent / "rawstor" / "_lib" / "librawstor.so").exists()


class Wheel(bdist_wheel):
    def finalize_options(self):
        super().finalize_options()
        self.root_is_pure = not BUNDLED

    def get_tag(self):
        python, abi, platform = super().get_tag()
        return ("py3", "none", platform) if BUNDLED else (python, abi, platform)


setup(cmdclass={"bdist_wheel": Wheel})

"""Which packages the wheel holds; everything else about the distribution is in pyproject.toml.

The message contract's JSON Schemas stay at the top of the repository (schemas/) and ship in the
wheel as the package `services.schemas`, read with importlib.resources, so a plain (non-editable)
install carries them. pyproject.toml cannot add a mapped package to the ones it finds, hence this file.
devtools/, tests/ and bench/ are not in the wheel.
"""

from setuptools import find_packages, setup

setup(
    packages=[*find_packages(include=["services", "services.*"]), "services.schemas"],
    package_dir={"services.schemas": "schemas"},
)

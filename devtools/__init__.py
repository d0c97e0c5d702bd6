"""Helpers of the build and the tests, run from a source checkout: not part of the service.

pyproject.toml packages ``internal*`` only, so nothing here is in the wheel or the image:
``wheel_check`` (make loc-build) and ``monitoring`` (make up-metric, the live monitoring test).
"""

"""What the tests share: isolated settings, the service runner, message factories, harnesses and checks.

Its pytest fixtures (`tests.support.fixtures`) are registered for every test directory by the root
`tests/conftest.py`.
"""

"""The JSON Schemas of the message contract, installed as the package `services.schemas` (setup.py).

The codec reads them with importlib.resources; each <Type>.v<N>.json has a payload class of the same
type and version in services.core.payloads.
"""

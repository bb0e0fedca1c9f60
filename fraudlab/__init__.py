"""fraudlab: research, train, explain and refresh fraud-detection models for payments.

The stages are subpackages, imported on demand so that ``import fraudlab`` stays fast:
``fraudlab.data_contracts``, ``fraudlab.features``, ``fraudlab.evaluation`` and
``fraudlab.training``.
"""

__version__ = "0.1.0"
__all__ = ["__version__"]

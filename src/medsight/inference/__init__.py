"""Inference: run a ModelPackage on Images.

- :mod:`medsight.inference.classify`: ``Predictor`` for classification packages.
- :mod:`medsight.inference.segment`: segmentation (sliding windows, post-processing).

Import from the submodules; nothing heavy is loaded by importing this package.
"""

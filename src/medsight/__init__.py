"""medsight: AI for medical imaging, from a DICOM study to a validated, explained report.

Nothing heavy is imported here; ``import medsight`` is cheap.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("medsight")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0"

__all__ = ["__version__"]

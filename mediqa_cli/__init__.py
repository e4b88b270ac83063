"""MedIQA: medical image quality assessment for archives of DICOM, NIfTI and 2D scans."""

__version__ = "0.1.0"

"""Reporting: Findings rendered as DICOM SEG and SR (highdicom), FHIR R4 and human reports."""

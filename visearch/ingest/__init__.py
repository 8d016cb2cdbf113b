"""Landing to lake: landing manifests, image validation, perceptual hashes, click-log rows, the
quarantine gate.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from visearch import lazy_exports

if TYPE_CHECKING:
    from visearch.ingest.interactions import Event as Event
    from visearch.ingest.interactions import event_id_of as event_id_of
    from visearch.ingest.interactions import parse_event as parse_event
    from visearch.ingest.landing import allowed_uri_prefixes as allowed_uri_prefixes
    from visearch.ingest.landing import file_uri as file_uri
    from visearch.ingest.landing import find_images as find_images
    from visearch.ingest.landing import land_folder as land_folder
    from visearch.ingest.landing import stable_image_id as stable_image_id
    from visearch.ingest.lines import landing_files as landing_files
    from visearch.ingest.lines import read_lines as read_lines
    from visearch.ingest.phash import dct2 as dct2
    from visearch.ingest.phash import dct_matrix as dct_matrix
    from visearch.ingest.phash import grayscale as grayscale
    from visearch.ingest.phash import hamming_distance as hamming_distance
    from visearch.ingest.phash import hash_thumbnail as hash_thumbnail
    from visearch.ingest.phash import phash as phash
    from visearch.ingest.phash import phash_pixels as phash_pixels
    from visearch.ingest.quality_gate import QualityGateError as QualityGateError
    from visearch.ingest.quality_gate import quarantine_gate as quarantine_gate
    from visearch.ingest.validation import Fields as Fields
    from visearch.ingest.validation import ImageInfo as ImageInfo
    from visearch.ingest.validation import RecordRejected as RecordRejected
    from visearch.ingest.validation import Rejection as Rejection
    from visearch.ingest.validation import UploadRecord as UploadRecord
    from visearch.ingest.validation import load_json_object as load_json_object
    from visearch.ingest.validation import parse_upload as parse_upload
    from visearch.ingest.validation import read_image_bytes as read_image_bytes
    from visearch.ingest.validation import uri_allowed as uri_allowed
    from visearch.ingest.validation import validate_image as validate_image
    from visearch.ingest.validation import validate_uri as validate_uri

_EXPORTS = {
    "Event": "interactions",
    "event_id_of": "interactions",
    "parse_event": "interactions",
    "allowed_uri_prefixes": "landing",
    "file_uri": "landing",
    "find_images": "landing",
    "land_folder": "landing",
    "stable_image_id": "landing",
    "landing_files": "lines",
    "read_lines": "lines",
    "dct2": "phash",
    "dct_matrix": "phash",
    "grayscale": "phash",
    "hamming_distance": "phash",
    "hash_thumbnail": "phash",
    "phash": "phash",
    "phash_pixels": "phash",
    "QualityGateError": "quality_gate",
    "quarantine_gate": "quality_gate",
    "Fields": "validation",
    "ImageInfo": "validation",
    "RecordRejected": "validation",
    "Rejection": "validation",
    "UploadRecord": "validation",
    "load_json_object": "validation",
    "parse_upload": "validation",
    "read_image_bytes": "validation",
    "uri_allowed": "validation",
    "validate_image": "validation",
    "validate_uri": "validation",
}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)

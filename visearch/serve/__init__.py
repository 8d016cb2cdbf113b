"""Serving: the Searcher over a published index, re-ranking, the HTTP server and the search CLI.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from visearch import lazy_exports

if TYPE_CHECKING:
    from visearch.serve.rerank import Candidate as Candidate
    from visearch.serve.rerank import DuplicateRule as DuplicateRule
    from visearch.serve.rerank import collapse_duplicates as collapse_duplicates
    from visearch.serve.rerank import duplicate_matrix as duplicate_matrix
    from visearch.serve.rerank import phash_to_int as phash_to_int
    from visearch.serve.rerank import rerank as rerank
    from visearch.serve.search import ImageTooLargeError as ImageTooLargeError
    from visearch.serve.search import Searcher as Searcher
    from visearch.serve.search import SearchResponse as SearchResponse
    from visearch.serve.search import parse_crop as parse_crop
    from visearch.serve.server import SearchHTTPServer as SearchHTTPServer
    from visearch.serve.server import make_server as make_server
    from visearch.serve.server import parse_multipart as parse_multipart
    from visearch.serve.server import parse_size as parse_size
    from visearch.serve.server import serve_in_thread as serve_in_thread

_EXPORTS = {
    "Candidate": "rerank",
    "DuplicateRule": "rerank",
    "collapse_duplicates": "rerank",
    "duplicate_matrix": "rerank",
    "phash_to_int": "rerank",
    "rerank": "rerank",
    "ImageTooLargeError": "search",
    "SearchResponse": "search",
    "Searcher": "search",
    "parse_crop": "search",
    "SearchHTTPServer": "server",
    "make_server": "server",
    "parse_multipart": "server",
    "parse_size": "server",
    "serve_in_thread": "server",
}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)

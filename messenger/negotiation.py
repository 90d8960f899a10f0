"""Content negotiation for a JSON-only API."""

from django.utils.http import parse_header_parameters
from rest_framework.negotiation import BaseContentNegotiation

# JSON exchanged between systems must be UTF-8 (RFC 8259, section 8.1); ASCII is a subset.
JSON_CHARSETS = frozenset({"utf-8", "utf8", "us-ascii"})


class JSONOnlyNegotiation(BaseContentNegotiation):
    """Always answer JSON, whatever the Accept header says (DRF's documented pattern for
    ignoring the client): there is one representation, so there is nothing to negotiate.

    A body is parsed only when its media type matches a parser (case-insensitively, as
    RFC 9110 says) in a charset JSON may use; anything else, rot13 or zlib included, is
    refused with 415 before a decoder is looked up."""

    def select_parser(self, request, parsers):
        media_type, params = parse_header_parameters(request.content_type)
        charset = params.get("charset", "utf-8").strip('"').lower()
        if charset not in JSON_CHARSETS:
            return None
        media_type = media_type.lower()
        for parser in parsers:
            if media_type == parser.media_type:
                return parser
        return None

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type

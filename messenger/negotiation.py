"""Content negotiation for a JSON-only API."""

from rest_framework.negotiation import BaseContentNegotiation


class JSONOnlyNegotiation(BaseContentNegotiation):
    """Always answer JSON, whatever the Accept header says (DRF's documented pattern for
    ignoring the client): there is one representation, so there is nothing to negotiate."""

    def select_parser(self, request, parsers):
        for parser in parsers:
            if request.content_type.split(";")[0].strip() == parser.media_type:
                return parser
        return None

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type

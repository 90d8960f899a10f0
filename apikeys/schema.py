"""The bearer scheme of ApiKeyAuthentication in the OpenAPI schema."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.plumbing import build_bearer_security_scheme_object


class ApiKeyScheme(OpenApiAuthenticationExtension):
    target_class = "apikeys.authentication.ApiKeyAuthentication"
    name = "apiKey"

    def get_security_definition(self, auto_schema) -> dict:
        return {
            **build_bearer_security_scheme_object("Authorization", "Bearer"),
            "description": "An API key (`manage.py api_keys create NAME`). Required when"
            " API_AUTH=required, the default in production; ignored when API_AUTH=off.",
        }

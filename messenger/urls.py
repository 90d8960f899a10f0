from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.negotiation import DefaultContentNegotiation

from apikeys.decorators import require_api_key
from messenger.decorators import require_safe_json
from messenger.schema import SCHEMA_SETTINGS
from shards import views as shard_views
from users import shard_overview
from users.views import ShardStatsView

admin.site.site_header = "Messenger administration"
admin.site.site_title = "Messenger admin"
admin.site.site_url = "/api/docs/"  # the site has no pages: "View site" opens the API docs

urlpatterns = [
    path("health", require_safe_json(shard_views.health), name="health"),
    path(
        "health/ready",
        require_safe_json(require_api_key(shard_views.health_ready)),
        name="health-ready",
    ),
    path("api/v1/", include("users.urls")),
    path("api/v1/shards/stats", ShardStatsView.as_view(), name="shard-stats"),
    # The schema view negotiates (YAML by default, JSON with ?format=json or Accept), unlike
    # the API itself, which only speaks JSON. The schema and the docs page need no API key.
    path(
        "api/schema/",
        require_safe_json(
            SpectacularAPIView.as_view(
                custom_settings=SCHEMA_SETTINGS,
                content_negotiation_class=DefaultContentNegotiation,
                authentication_classes=[],
            )
        ),
        name="schema",
    ),
    path(
        "api/docs/",
        require_safe_json(
            SpectacularSwaggerView.as_view(url_name="schema", authentication_classes=[])
        ),
        name="api-docs",
    ),
    # Before admin.site.urls, whose catch-all would answer it otherwise.
    path(
        "admin/shards/",
        admin.site.admin_view(shard_overview.shard_overview),
        name="admin-shard-overview",
    ),
    path("admin/", admin.site.urls),
]

handler400 = "messenger.errors.bad_request"
handler404 = "messenger.errors.not_found"
handler500 = "messenger.errors.server_error"

from django.contrib import admin
from django.urls import include, path

from shards import views as shard_views

urlpatterns = [
    path("health", shard_views.health, name="health"),
    path("health/ready", shard_views.health_ready, name="health-ready"),
    path("api/v1/", include("users.urls")),
    path("api/v1/shards/stats", shard_views.ShardStatsView.as_view(), name="shard-stats"),
    path("admin/", admin.site.urls),
]

handler400 = "messenger.errors.bad_request"
handler404 = "messenger.errors.not_found"
handler500 = "messenger.errors.server_error"

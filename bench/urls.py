"""The product's URLs plus the comparison endpoints under /bench/ (never deployed)."""

from django.urls import include, path
from rest_framework.routers import DefaultRouter

from bench import views
from messenger.urls import handler400, handler404, handler500  # noqa: F401 - Django reads them

stock_router = DefaultRouter()
stock_router.register("users", views.StockUserViewSet, basename="stock-user")

urlpatterns = [
    path("bench/ceiling/users/<str:user_id>", views.ceiling_get_user, name="bench-ceiling-get"),
    path("bench/ceiling/users", views.ceiling_list_users, name="bench-ceiling-list"),
    path("bench/bare/users", views.bare_create_user, name="bench-bare-create"),
    path("bench/stock/", include(stock_router.urls)),
    path("", include("messenger.urls")),
]

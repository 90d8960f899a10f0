from rest_framework.routers import SimpleRouter

from users.views import UserViewSet

router = SimpleRouter()
# The seed's paths have a trailing slash on /users/ and none on /users/:id: accept both.
# (SimpleRouter's constructor only knows "/" or ""; the attribute takes a regex.)
router.trailing_slash = "/?"
router.register("users", UserViewSet, basename="user")

urlpatterns = router.urls

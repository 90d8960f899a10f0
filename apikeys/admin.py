"""API keys in the Django admin: create (the key is shown once), list, revoke."""

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.forms import ModelForm
from django.http import HttpRequest

from apikeys import keys
from apikeys.models import ApiKey


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = ("name", "prefix", "created_at", "revoked_at")
    list_filter = (("revoked_at", admin.EmptyFieldListFilter),)
    search_fields = ("name", "prefix")
    actions = ["revoke_selected"]

    def get_fields(self, request: HttpRequest, obj: ApiKey | None = None) -> tuple[str, ...]:
        return ("name", "prefix", "created_at", "revoked_at") if obj else ("name",)

    def get_readonly_fields(self, request: HttpRequest, obj: ApiKey | None = None) -> tuple:
        return ("prefix", "created_at", "revoked_at") if obj else ()

    def save_model(self, request: HttpRequest, obj: ApiKey, form: ModelForm, change: bool) -> None:
        if change:
            obj.save(update_fields=["name"])
            return
        key, obj.prefix, obj.key_hash = keys.new_key()
        obj.save()
        messages.warning(request, f"The key of “{obj.name}”: {key} (copy it now: it is shown once)")

    @admin.action(description="Revoke selected API keys")
    def revoke_selected(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        count = keys.revoke(queryset)
        self.message_user(request, f"{count} key(s) revoked.", messages.SUCCESS)

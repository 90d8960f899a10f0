"""Input validation and output shape of users. No business rules here (see services)."""

from datetime import datetime

from rest_framework import serializers

READ_ONLY_FIELDS = ("id", "created_at", "updated_at")


def iso_utc(moment: datetime) -> str:
    """ISO 8601 in UTC with microseconds: 2026-11-25T08:14:53.123456Z."""
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


def user_representation(user) -> dict:
    return {
        "id": str(user.id),
        "name": user.name,
        "email": user.email,
        "created_at": iso_utc(user.created_at),
        "updated_at": iso_utc(user.updated_at),
    }


class UserInputSerializer(serializers.Serializer):
    """Body of POST (all fields) and PUT/PATCH (any non-empty subset). Fields it does not
    know, or that only the server sets, are refused by name rather than ignored."""

    name = serializers.CharField(max_length=255, allow_blank=False, trim_whitespace=True)
    email = serializers.EmailField(max_length=254)

    def to_internal_value(self, data):
        if not isinstance(data, dict):
            return super().to_internal_value(data)
        errors = {}
        for key in data:
            if key in READ_ONLY_FIELDS:
                errors[key] = ["This field is read-only."]
            elif key not in self.fields:
                errors[key] = ["Unknown field."]
        if self.partial and not data:
            errors["non_field_errors"] = ["Give at least one of: name, email."]
        try:
            value = super().to_internal_value(data)
        except serializers.ValidationError as exc:
            errors.update(exc.detail)
        if errors:
            raise serializers.ValidationError(errors)
        return value

    def validate_email(self, value: str) -> str:
        return value.strip()


class ListQuerySerializer(serializers.Serializer):
    limit = serializers.IntegerField(min_value=1, max_value=100, default=20)
    offset = serializers.IntegerField(min_value=0, default=0)
    cursor = serializers.CharField(required=False, allow_blank=False)
    email = serializers.CharField(required=False, allow_blank=False, max_length=254)
    partial = serializers.BooleanField(default=False)

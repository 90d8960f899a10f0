"""The users of every shard in the Django admin.

Users live on the shards, never on `default`. This ModelAdmin implements Django's documented
multi-database hooks for them (`get_queryset`: the selected shard; `get_object`: routed by the
id; `save_model` and `delete_model`: through users.services), keeps what the admin gives a
registered model (its URLs and names, permissions, breadcrumbs, the action log) and replaces
the views whose stock versions count and offset-page a table: a list per shard (keyset pages,
newest first), search by email (through the email lookup) or by id (routed to its shard),
and change and delete pages that save and delete through those hooks, so email uniqueness
and the lookup table stay right.

The admin keeps its consistency token in its session, as an API client keeps it in a header:
after an edit the operator reads what they wrote, however far a replica lags."""

import uuid
from dataclasses import dataclass

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.http import urlencode

from shards import slot_map
from shards.access import run_read
from shards.consistency import (
    InvalidToken,
    Positions,
    decode_token,
    encode_token,
    merge,
    positions_of_request,
)
from shards.errors import ShardUnavailable
from shards.topology import Shard, all_shards, shard_by_id, shard_for_user_id
from users import selectors, services
from users.email_lookup import EmailTaken
from users.models import User
from users.pagination import Cursor, InvalidCursor
from users.user_queries import page as user_page

PAGE_SIZE = 25
SESSION_TOKEN_KEY = "users_consistency_token"


class UserForm(forms.Form):
    """The limits of the API's input (users.serializers.UserInputSerializer)."""

    name = forms.CharField(max_length=255)
    email = forms.EmailField(max_length=254)


@dataclass(frozen=True)
class Found:
    user: User
    shard: Shard


def _session_positions(request: HttpRequest) -> Positions:
    try:
        return decode_token(request.session.get(SESSION_TOKEN_KEY))
    except InvalidToken:
        return {}


def _remember_writes(request: HttpRequest, positions: Positions) -> None:
    if positions:
        token = merge(_session_positions(request), positions)
        request.session[SESSION_TOKEN_KEY] = encode_token(token)


def _log_object(user: User) -> User:
    """An unsaved model instance for the admin's action log, which records the content type,
    id and text of what changed (the row itself lives on a shard, not in `default`)."""
    return User(id=user.id, name=user.name, email=user.email)


def _parse_uuid(text: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(text)
    except ValueError:
        return None


def shard_page(
    shard: Shard, *, after: Cursor | None, limit: int, positions: Positions
) -> tuple[list, Cursor | None]:
    """One page of one shard's users, newest first, after `after` (keyset: an index scan on
    (created_at, id) whatever the depth); returns the rows and the cursor of the next page."""
    position = None if after is None else (after.created_at, after.id)
    with positions_of_request(positions):
        skip = slot_map.current().foreign.get(shard.id, ())  # a move's copies are not its own
        rows = run_read(shard, lambda: user_page(shard, position, limit + 1, skip))
    page = rows[:limit]
    next_cursor = Cursor(page[-1].created_at, page[-1].id) if len(rows) > limit else None
    return page, next_cursor


def find_users(query: str, positions: Positions) -> list[Found]:
    """A user id is routed to its shard; an email goes through the email lookup."""
    user_id = _parse_uuid(query)
    with positions_of_request(positions):
        if user_id is not None:
            user = selectors.get_user(user_id=user_id)
        else:
            user = selectors.find_user_by_email(email=query)
    return [Found(user, shard_for_user_id(user.id))] if user else []


@admin.register(User)
class ShardedUserAdmin(admin.ModelAdmin):
    def get_urls(self) -> list[URLPattern]:
        # The admin's URL names, so its index, breadcrumbs and action log link here.
        prefix = f"{self.opts.app_label}_{self.opts.model_name}"
        view = self.admin_site.admin_view
        return [
            path("", view(self.changelist_view), name=f"{prefix}_changelist"),
            path("<path:object_id>/change/", view(self.change_view), name=f"{prefix}_change"),
            path("<path:object_id>/delete/", view(self.delete_view), name=f"{prefix}_delete"),
        ]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # users are created through the API

    # --- helpers ---------------------------------------------------------------------------
    def _context(self, request: HttpRequest, title: str, **extra) -> dict:
        return {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": title,
            **extra,
        }

    def _changelist_url(self, shard: Shard | None = None) -> str:
        url = reverse(f"admin:{self.opts.app_label}_{self.opts.model_name}_changelist")
        return f"{url}?{urlencode({'shard': shard.id})}" if shard else url

    def _change_url(self, user_id: uuid.UUID) -> str:
        return reverse(
            f"admin:{self.opts.app_label}_{self.opts.model_name}_change", args=[str(user_id)]
        )

    def _selected_shard(self, request: HttpRequest) -> Shard:
        raw = request.GET.get("shard", "0")
        if raw.isdigit() and int(raw) < len(all_shards()):
            return shard_by_id(int(raw))
        messages.warning(request, f"No shard {raw!r}: showing shard-0.")
        return shard_by_id(0)

    # --- Django's multi-database hooks ------------------------------------------------------
    def get_queryset(self, request: HttpRequest):
        """The users of the shard the list shows (`?shard=`), where the router sends them."""
        return User.objects.for_shard(self._selected_shard(request))

    def get_object(self, request: HttpRequest, object_id: str, from_field=None) -> User | None:
        """The user, from the shard its id routes to, read with the admin's consistency
        token (its replica only once that holds the admin's last write). Raises
        ShardUnavailable."""
        user_id = _parse_uuid(object_id)
        if user_id is None:
            return None
        with positions_of_request(_session_positions(request)):
            return selectors.get_user(user_id=user_id)

    def save_model(self, request: HttpRequest, obj: User, form: UserForm, change: bool) -> None:
        """Through the users service, like the API: the email's claim moves with it. Raises
        UserNotFound, EmailTaken, ShardUnavailable."""
        changes = {field: form.cleaned_data[field] for field in form.changed_data}
        updated, positions = services.update_user(user_id=obj.id, **changes)
        _remember_writes(request, positions)
        obj.name, obj.email, obj.updated_at = updated.name, updated.email, updated.updated_at

    def delete_model(self, request: HttpRequest, obj: User) -> None:
        """Through the users service: the user's rows on its shard and its email claim go.
        Raises UserNotFound, ShardUnavailable."""
        _remember_writes(request, services.delete_user(user_id=obj.id))

    def _load_user(self, request: HttpRequest, object_id: str) -> User | HttpResponse:
        """The user, or the redirect that explains why it cannot be shown."""
        user_id = _parse_uuid(object_id)
        if user_id is None:
            messages.warning(request, f"{object_id!r} is not a user id.")
            return HttpResponseRedirect(self._changelist_url())
        try:
            user = self.get_object(request, object_id)
        except ShardUnavailable as exc:
            messages.error(request, str(exc))
            return HttpResponseRedirect(self._changelist_url(shard_for_user_id(user_id)))
        if user is None:
            messages.warning(request, f"No user with id {user_id}: it may have been deleted.")
            return HttpResponseRedirect(self._changelist_url(shard_for_user_id(user_id)))
        return user

    # --- views -----------------------------------------------------------------------------
    def changelist_view(
        self, request: HttpRequest, extra_context: dict | None = None
    ) -> HttpResponse:
        if not self.has_view_or_change_permission(request):
            raise PermissionDenied
        positions = _session_positions(request)
        shard = self._selected_shard(request)
        query = request.GET.get("q", "").strip()
        context = self._context(
            request,
            "Users per shard",
            shard=shard,
            shards=all_shards(),
            query=query,
            rows=[],
            found=None,
            next_url=None,
            first_url=None,
            error=None,
        )
        if query:
            try:
                context["found"] = find_users(query, positions)
            except ShardUnavailable as exc:
                context["error"] = str(exc)
            return TemplateResponse(request, "admin/users/user_list.html", context)

        after = None
        if request.GET.get("after"):
            try:
                after = Cursor.decode(request.GET["after"])
            except InvalidCursor:
                messages.warning(request, "Invalid page cursor: showing the first page.")
            else:
                context["first_url"] = self._changelist_url(shard)
        try:
            rows, next_cursor = shard_page(shard, after=after, limit=PAGE_SIZE, positions=positions)
        except ShardUnavailable as exc:
            context["error"] = str(exc)
        else:
            context["rows"] = rows
            if next_cursor is not None:
                query_string = urlencode({"shard": shard.id, "after": next_cursor.encode()})
                context["next_url"] = f"{self._changelist_url()}?{query_string}"
        return TemplateResponse(request, "admin/users/user_list.html", context)

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict | None = None,
    ) -> HttpResponse:
        if not self.has_view_or_change_permission(request):
            raise PermissionDenied
        user = self._load_user(request, object_id)
        if isinstance(user, HttpResponse):
            return user
        shard = shard_for_user_id(user.id)
        can_change = self.has_change_permission(request)
        initial = {"name": user.name, "email": user.email}
        if request.method == "POST":
            if not can_change:
                raise PermissionDenied
            form = UserForm(request.POST, initial=initial)
            if form.is_valid():
                response = self._save(request, user, shard, form)
                if response is not None:
                    return response
        else:
            form = UserForm(initial=initial)
        context = self._context(
            request,
            f"Change user {user.name}",
            object=user,
            shard=shard,
            form=form,
            can_change=can_change,
            can_delete=self.has_delete_permission(request),
            list_url=self._changelist_url(shard),
        )
        return TemplateResponse(request, "admin/users/user_change.html", context)

    def _save(
        self, request: HttpRequest, user: User, shard: Shard, form: UserForm
    ) -> HttpResponse | None:
        """Apply the form through the service; None when the form shows an error instead."""
        changes = {field: form.cleaned_data[field] for field in form.changed_data}
        if not changes:
            messages.info(request, "No fields changed.")
            return HttpResponseRedirect(self._changelist_url(shard))
        try:
            self.save_model(request, user, form, change=True)
        except services.UserNotFound:
            messages.warning(request, f"No user with id {user.id}: it may have been deleted.")
            return HttpResponseRedirect(self._changelist_url(shard))
        except EmailTaken as exc:
            if exc.pending:
                form.add_error("email", "A user with this email is being created; retry shortly.")
            else:
                form.add_error("email", "A user with this email already exists.")
            return None
        except ShardUnavailable as exc:
            form.add_error(None, f"Not saved: {exc}")
            return None
        fields = [form.fields[name].label or name.capitalize() for name in changes]
        logged = _log_object(user)
        self.log_change(request, logged, [{"changed": {"fields": fields}}])
        messages.success(request, f"The user “{logged}” on {shard.name} was changed.")
        if "_continue" in request.POST:
            return HttpResponseRedirect(self._change_url(user.id))
        return HttpResponseRedirect(self._changelist_url(shard))

    def delete_view(
        self, request: HttpRequest, object_id: str, extra_context: dict | None = None
    ) -> HttpResponse:
        if not self.has_delete_permission(request):
            raise PermissionDenied
        user = self._load_user(request, object_id)
        if isinstance(user, HttpResponse):
            return user
        shard = shard_for_user_id(user.id)
        if request.method == "POST":
            try:
                self.delete_model(request, user)
            except services.UserNotFound:
                messages.warning(request, f"No user with id {user.id}: already deleted.")
                return HttpResponseRedirect(self._changelist_url(shard))
            except ShardUnavailable as exc:
                messages.error(request, f"Not deleted: {exc}")
                return HttpResponseRedirect(self._change_url(user.id))
            deleted = _log_object(user)
            self.log_deletions(request, [deleted])
            messages.success(request, f"The user “{deleted}” was deleted from {shard.name}.")
            return HttpResponseRedirect(self._changelist_url(shard))
        context = self._context(
            request,
            "Are you sure?",
            object=user,
            shard=shard,
            change_url=self._change_url(user.id),
        )
        return TemplateResponse(request, "admin/users/user_delete.html", context)

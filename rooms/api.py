"""The moderators' API: one view per operation, the same rights as the dashboard."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from django.http import HttpResponse
from django.shortcuts import get_object_or_404
from django.utils import timezone
from drf_spectacular.extensions import OpenApiSerializerExtension
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.plumbing import force_instance
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.exceptions import NotFound, PermissionDenied
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from guestgate.api import error_responses
from rooms.invite_links import (
    invite_link_create,
    invite_link_revoke,
    invite_link_state,
    invite_link_token_matches,
    invite_url,
)
from rooms.models import AuditEntry, CallRoom, CallStatus, InviteLink, JoinRequest
from rooms.moderation import (
    join_request_approve,
    join_request_deny,
    join_request_remove_from_call,
    join_requests_approve_all,
)
from rooms.permissions import RoomRights, actor_name, room_visible_to
from rooms.qr_codes import qr_png, qr_svg
from rooms.selectors import room_audit, room_guests_let_in, room_queue, rooms_for_moderator


def _room(request: Request, pk: int) -> tuple[CallRoom, RoomRights]:
    visible = room_visible_to(pk, request.user)
    if visible is None:
        raise NotFound("No such room.")
    return visible


def _join_request(request: Request, pk: int, need: str) -> JoinRequest:
    join_request = get_object_or_404(JoinRequest.objects.select_related("room"), pk=pk)
    _, rights = _room(request, join_request.room_id)
    if not getattr(rights, need):
        raise PermissionDenied("Your power level in this room does not allow that.")
    return join_request


# The JSON type each kind of input field takes (DRF alone would take "5" for 5, "yes" for true).
_JSON_TYPES: list[tuple[type[serializers.Field], type, str]] = [
    (serializers.BooleanField, bool, "a boolean"),
    (serializers.IntegerField, int, "an integer"),
    (serializers.CharField, str, "a string"),
    (serializers.ChoiceField, str, "a string"),
    (serializers.DateTimeField, str, "a string"),
]


# A request body that refuses what its schema does not allow: unknown fields (a typo would
# otherwise be ignored) and, in JSON, values of another type. (A comment, not a docstring: the
# schema would show it as every input's description.)
class StrictInput(serializers.Serializer):
    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, Mapping):
            errors = {name: ["Unknown field."] for name in data if name not in self.fields}
            if type(data) is dict:  # parsed JSON; a form's values are all strings
                errors |= self._type_errors(data)
            if errors:
                raise serializers.ValidationError(errors)
        return super().to_internal_value(data)

    def _type_errors(self, data: dict[str, Any]) -> dict[str, list[str]]:
        errors = {}
        for name, value in data.items():
            field = self.fields.get(name)
            if field is None or value is None:  # DRF says whether null is allowed
                continue
            for kind, json_type, words in _JSON_TYPES:
                if isinstance(field, kind):
                    if not isinstance(value, json_type) or (
                        json_type is int and isinstance(value, bool)
                    ):
                        errors[name] = [f"Must be {words}."]
                    break
        return errors


class StrictInputSchema(OpenApiSerializerExtension):
    """In the schema, a StrictInput says that it refuses unknown fields, and its strings the
    null character (DRF's CharField refuses it)."""

    target_class = StrictInput
    match_subclasses = True

    def map_serializer(self, auto_schema: AutoSchema, direction: Any) -> dict[str, Any]:
        schema = auto_schema._map_serializer(self.target, direction, bypass_extensions=True)
        for name, field in force_instance(self.target).fields.items():
            if isinstance(field, serializers.CharField):
                schema["properties"][name]["pattern"] = "^[^\\u0000]*$"
        return {**schema, "additionalProperties": False}


# Every operation needs a signed-in moderator (403); those that name a room, link or request
# also answer 404 for one the moderator cannot see.
_NAMED = error_responses(403, 404)


class RoomList(APIView):
    class RoomOutput(serializers.Serializer):
        id = serializers.IntegerField(source="room.pk")
        room_id = serializers.CharField(source="room.room_id")
        name = serializers.CharField(source="room.name")
        status = serializers.CharField(source="room.status")
        problems = serializers.ListField(child=serializers.CharField())
        waiting = serializers.IntegerField()
        may_approve = serializers.BooleanField(source="rights.approve")
        may_deny = serializers.BooleanField(source="rights.deny")
        may_ban = serializers.BooleanField(source="rights.ban")

    @extend_schema(
        responses={200: RoomOutput(many=True), **error_responses(403)},
        summary="Rooms you moderate",
    )
    def get(self, request: Request) -> Response:
        return Response(self.RoomOutput(rooms_for_moderator(request.user), many=True).data)


class CallOutput(serializers.Serializer):
    state = serializers.ChoiceField(
        choices=[CallStatus.IN_CALL, CallStatus.LEFT, CallStatus.NOT_JOINED],
        help_text="In the call now (a device of theirs), left it, or not joined it yet.",
    )
    since = serializers.DateTimeField(
        allow_null=True,
        help_text="In the call: since when; left: when the last device left; else null.",
    )


class JoinRequestOutput(serializers.ModelSerializer):
    is_guest = serializers.SerializerMethodField()
    invite_link = serializers.CharField(source="invite_link.label", default="")
    call = CallOutput(read_only=True)

    class Meta:
        model = JoinRequest
        fields = [
            "id",
            "user_id",
            "display_name",
            "status",
            "is_guest",
            "reason",
            "decided_by",
            "invite_link",
            "call",
            "created_at",
            "updated_at",
        ]

    def get_is_guest(self, join_request: JoinRequest) -> bool:
        return join_request.guest_id is not None


class RoomJoinRequestList(APIView):
    @extend_schema(
        responses={200: JoinRequestOutput(many=True), **_NAMED}, summary="Who is waiting in a room"
    )
    def get(self, request: Request, pk: int) -> Response:
        room, _ = _room(request, pk)
        return Response(JoinRequestOutput(room_queue(room), many=True).data)


class RoomGuestsLetIn(APIView):
    @extend_schema(
        responses={200: JoinRequestOutput(many=True), **_NAMED},
        summary="Who was let in (or removed from the call), and whether they are in the call",
    )
    def get(self, request: Request, pk: int) -> Response:
        room, _ = _room(request, pk)
        return Response(JoinRequestOutput(room_guests_let_in(room), many=True).data)


class Approve(APIView):
    @extend_schema(
        request=None,
        responses={200: JoinRequestOutput, **error_responses(403, 404, 409, 502, 503)},
        summary="Let someone in",
    )
    def post(self, request: Request, pk: int) -> Response:
        join_request = _join_request(request, pk, "approve")
        join_request_approve(join_request, moderator=actor_name(request.user))
        join_request.refresh_from_db()
        return Response(JoinRequestOutput(join_request).data)


class DenyInput(StrictInput):
    reason = serializers.CharField(required=False, allow_blank=True, max_length=500, default="")


class Deny(APIView):
    ban = False

    @extend_schema(
        request={"application/json": DenyInput},
        responses={200: JoinRequestOutput, **error_responses(400, 403, 404, 409, 415, 502, 503)},
        summary="Turn someone away (kick); the reason reaches a guest's lobby",
    )
    def post(self, request: Request, pk: int) -> Response:
        join_request = _join_request(request, pk, "ban" if self.ban else "deny")
        data = DenyInput(data=request.data)
        data.is_valid(raise_exception=True)
        join_request_deny(
            join_request,
            moderator=actor_name(request.user),
            reason=data.validated_data["reason"],
            ban=self.ban,
        )
        join_request.refresh_from_db()
        return Response(JoinRequestOutput(join_request).data)


class Ban(Deny):
    ban = True


class RemoveFromCall(APIView):
    @extend_schema(
        request={"application/json": DenyInput},
        responses={200: JoinRequestOutput, **error_responses(400, 403, 404, 409, 415, 502, 503)},
        summary="Remove a let-in guest from the call (kick); the reason reaches their lobby",
    )
    def post(self, request: Request, pk: int) -> Response:
        join_request = _join_request(request, pk, "deny")
        data = DenyInput(data=request.data)
        data.is_valid(raise_exception=True)
        join_request_remove_from_call(
            join_request, moderator=actor_name(request.user), reason=data.validated_data["reason"]
        )
        join_request.refresh_from_db()
        return Response(JoinRequestOutput(join_request).data)


class ApproveAll(APIView):
    class ApproveAllOutput(serializers.Serializer):
        approved = serializers.IntegerField()
        skipped = serializers.IntegerField()

    @extend_schema(
        request=None,
        responses={200: ApproveAllOutput, **_NAMED},
        summary="Let everyone waiting in",
    )
    def post(self, request: Request, pk: int) -> Response:
        room, rights = _room(request, pk)
        if not rights.approve:
            raise PermissionDenied("Your power level in this room does not allow that.")
        result = join_requests_approve_all(room, moderator=actor_name(request.user))
        return Response(self.ApproveAllOutput(result).data)


class Audit(APIView):
    class AuditOutput(serializers.ModelSerializer):
        class Meta:
            model = AuditEntry
            fields = ["at", "action", "actor", "subject", "subject_name", "reason", "via_guestgate"]

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "q", str, description="Only entries that mention this (its first 100 characters)"
            )
        ],
        responses={200: AuditOutput(many=True), **_NAMED},
        summary="A room's audit log (?q= searches)",
    )
    def get(self, request: Request, pk: int) -> Response:
        room, _ = _room(request, pk)
        query = str(request.query_params.get("q", ""))[:100]
        return Response(self.AuditOutput(room_audit(room, query=query), many=True).data)


class InviteLinkOutput(serializers.ModelSerializer):
    state = serializers.SerializerMethodField()

    class Meta:
        model = InviteLink
        fields = [
            "id",
            "label",
            "state",
            "pre_approved",
            "expires_at",
            "max_uses",
            "use_count",
            "revoked_at",
            "created_by",
            "created_at",
        ]

    def get_state(self, link: InviteLink) -> str:
        return invite_link_state(link)


class NewInviteLinkInput(StrictInput):
    # A field named like Field.label, which the stubs type as a string.
    label = serializers.CharField(  # type: ignore[assignment]
        required=False, allow_blank=True, max_length=100, default=""
    )
    pre_approved = serializers.BooleanField(required=False, default=False)
    expires_at = serializers.DateTimeField(
        required=False, allow_null=True, default=None, help_text="In the future; null: never."
    )
    max_uses = serializers.IntegerField(
        required=False, allow_null=True, min_value=1, max_value=100_000, default=None
    )

    def validate_expires_at(self, value: datetime | None) -> datetime | None:
        if value is not None and value <= timezone.now():
            raise serializers.ValidationError("The expiry must be in the future.")
        return value


class NewInviteLinkOutput(InviteLinkOutput):
    token = serializers.CharField()
    url = serializers.CharField()

    class Meta(InviteLinkOutput.Meta):
        fields = [*InviteLinkOutput.Meta.fields, "token", "url"]


def _links_room(request: Request, pk: int) -> CallRoom:
    room, rights = _room(request, pk)
    if not rights.approve:
        raise PermissionDenied("Invite links need the power to invite in this room.")
    return room


class RoomInviteLinks(APIView):
    @extend_schema(
        responses={200: InviteLinkOutput(many=True), **_NAMED}, summary="A room's invite links"
    )
    def get(self, request: Request, pk: int) -> Response:
        room = _links_room(request, pk)
        return Response(InviteLinkOutput(room.invite_links.order_by("-created_at"), many=True).data)

    @extend_schema(
        request={"application/json": NewInviteLinkInput},
        responses={201: NewInviteLinkOutput, **error_responses(400, 403, 404, 415)},
        summary="Make an invite link; its token is in this answer only",
    )
    def post(self, request: Request, pk: int) -> Response:
        room = _links_room(request, pk)
        data = NewInviteLinkInput(data=request.data)
        data.is_valid(raise_exception=True)
        new = invite_link_create(
            room=room, created_by=actor_name(request.user), **data.validated_data
        )
        link = new.link
        link.token, link.url = new.token, invite_url(new.token)  # type: ignore[attr-defined]
        return Response(NewInviteLinkOutput(link).data, status=201)


def _own_link(request: Request, pk: int) -> InviteLink:
    link = get_object_or_404(InviteLink.objects.select_related("room"), pk=pk)
    _links_room(request, link.room_id)
    return link


class RevokeInviteLink(APIView):
    @extend_schema(
        request=None,
        responses={200: InviteLinkOutput, **_NAMED},
        summary="Withdraw a link at once",
    )
    def post(self, request: Request, pk: int) -> Response:
        link = _own_link(request, pk)
        invite_link_revoke(link, by=actor_name(request.user))
        link.refresh_from_db()
        return Response(InviteLinkOutput(link).data)


class QrInput(StrictInput):
    # Trimmed in the view: only an empty token is refused (400), as the schema says; one of
    # spaces only is not this link's (404).
    token = serializers.CharField(min_length=1, max_length=100, trim_whitespace=False)
    kind = serializers.ChoiceField(choices=["png", "svg"], default="svg")


class InviteLinkQr(APIView):
    @extend_schema(
        request={"application/json": QrInput},
        responses={
            (200, "image/png"): bytes,
            (200, "image/svg+xml"): str,
            **error_responses(400, 403, 404, 415),
        },
        summary="The link's QR code; send the token it was made with",
    )
    def post(self, request: Request, pk: int) -> HttpResponse:
        link = _own_link(request, pk)
        data = QrInput(data=request.data)
        data.is_valid(raise_exception=True)
        token = data.validated_data["token"].strip()
        if not invite_link_token_matches(link, token):
            raise NotFound("That is not this link's token.")
        url = invite_url(token)
        if data.validated_data["kind"] == "png":
            return HttpResponse(qr_png(url), content_type="image/png")
        return HttpResponse(qr_svg(url), content_type="image/svg+xml")

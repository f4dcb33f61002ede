"""What a person may do in a call room: the room's power levels decide, read by GuestGate's bot.

A moderator needs an explicit power level in the room (or to be one of its creators) at least
the level the action needs on Matrix: invite to approve, kick to deny, ban to ban, the level of
``m.room.join_rules`` events to have the bot set the join rule, the power to change the call
member event's level in ``m.room.power_levels`` to have the bot let guests join the call
(rooms.call_levels), the level of ``m.room.power_levels`` events to choose the room's settings
(its retention policy: the room's admins). The bot acts with its own
power, so each thing it does for a moderator needs the power that change itself needs. Django
superusers (admins) may do everything everywhere. Who may create new call rooms is a setting
(``ROOM_CREATORS``), since no room's power levels can say it.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.http import Http404, HttpRequest

from rooms.call_levels import may_let_guests_join_call
from rooms.models import CallRoom


@dataclass(frozen=True)
class RoomRights:
    approve: bool
    deny: bool
    ban: bool
    set_join_rule: bool
    let_guests_join_call: bool = False
    change_settings: bool = False

    @property
    def see(self) -> bool:
        return self.approve

    @property
    def admin(self) -> bool:
        """One of the room's admins (may change its power levels, so its settings)."""
        return self.change_settings


NONE = RoomRights(approve=False, deny=False, ban=False, set_join_rule=False)
ALL = RoomRights(
    approve=True,
    deny=True,
    ban=True,
    set_join_rule=True,
    let_guests_join_call=True,
    change_settings=True,
)


def matrix_id_of(user: AbstractBaseUser | AnonymousUser) -> str | None:
    """Moderators' Django usernames are their Matrix ids (see rooms.moderators)."""
    name = user.get_username() if user.is_authenticated else ""
    return name if name.startswith("@") else None


def room_rights(room: CallRoom, user: AbstractBaseUser | AnonymousUser) -> RoomRights:
    if not user.is_authenticated:
        return NONE
    if getattr(user, "is_superuser", False):
        return ALL
    matrix_id = matrix_id_of(user)
    levels = room.levels
    if matrix_id is None or (matrix_id not in levels.users and matrix_id not in levels.creators):
        return NONE
    return RoomRights(
        approve=levels.may_invite(matrix_id),
        deny=levels.may_kick(matrix_id),
        ban=levels.may_ban(matrix_id),
        set_join_rule=levels.may_send_state(matrix_id, "m.room.join_rules"),
        let_guests_join_call=may_let_guests_join_call(levels, matrix_id),
        change_settings=levels.may_send_state(matrix_id, "m.room.power_levels"),
    )


def may_create_call_rooms(user: AbstractBaseUser | AnonymousUser) -> bool:
    """Whether this person may have GuestGate's bot create a call room for them: a signed-in
    Matrix user listed in ``ROOM_CREATORS`` by id or by server (``:example.org``). The room
    needs a Matrix user to make its admin, so admins without a Matrix id may not."""
    matrix_id = matrix_id_of(user)
    if matrix_id is None:
        return False
    server = ":" + matrix_id.split(":", 1)[1] if ":" in matrix_id else None
    return any(entry in (matrix_id, server) for entry in settings.ROOM_CREATORS)


def actor_name(user: AbstractBaseUser | AnonymousUser) -> str:
    """Who acts, for audit entries and reasons on Matrix: a moderator's Matrix id, or an
    admin's Django name."""
    return matrix_id_of(user) or f"admin {user.get_username()}"


def room_visible_to(
    pk: int, user: AbstractBaseUser | AnonymousUser
) -> tuple[CallRoom, RoomRights] | None:
    """The room and the person's rights in it, or None if they may not see it (its existence
    is not revealed to them)."""
    room = CallRoom.objects.filter(pk=pk).first()
    if room is None:
        return None
    rights = room_rights(room, user)
    return (room, rights) if rights.see else None


def room_for(request: HttpRequest, pk: int) -> tuple[CallRoom, RoomRights]:
    """For a view: the room and the signed-in person's rights in it; a room they may not see
    is not found (404)."""
    visible = room_visible_to(pk, request.user)
    if visible is None:
        raise Http404("no such room for this moderator")
    return visible

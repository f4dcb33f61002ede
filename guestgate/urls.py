from django.contrib import admin
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView

from guestgate import views
from guestgate.api import not_found as api_not_found
from ops import views as ops_views
from rooms import (
    api,
    appservice_views,
    dashboard_views,
    guest_views,
    invite_link_views,
    room_views,
)

# A fault while answering: a busy database is a 503 "try again", anything else a plain 500.
handler500 = "ops.views.server_error"

urlpatterns = [
    path("", views.home, name="home"),
    path("branding.css", views.branding_css, name="branding-css"),
    path("admin/", admin.site.urls),
    path("i18n/", include("django.conf.urls.i18n")),  # set_language: the language switch
    path("healthz", ops_views.healthz, name="healthz"),
    path("metrics", ops_views.metrics, name="metrics"),
    path("moderator/", dashboard_views.dashboard, name="dashboard"),
    path("moderator/sign-in", dashboard_views.sign_in, name="moderator-login"),
    path("moderator/sign-out", dashboard_views.sign_out, name="moderator-logout"),
    path("moderator/rooms", dashboard_views.room_register, name="moderator-room-register"),
    path("moderator/rooms/new", room_views.room_new, name="moderator-room-new"),
    path("moderator/rooms/<int:pk>", dashboard_views.room_detail, name="moderator-room"),
    path(
        "moderator/rooms/<int:pk>/settings",
        room_views.room_settings,
        name="moderator-room-settings",
    ),
    path("moderator/rooms/<int:pk>/queue", dashboard_views.room_queue_live, name="moderator-queue"),
    path(
        "moderator/rooms/<int:pk>/approve-all",
        dashboard_views.approve_all,
        name="moderator-approve-all",
    ),
    path(
        "moderator/rooms/<int:pk>/message",
        dashboard_views.message_waiting_guests,
        name="moderator-message",
    ),
    path(
        "moderator/requests/<int:pk>/message",
        dashboard_views.message_waiting_guest,
        name="moderator-message-guest",
    ),
    path("moderator/rooms/<int:pk>/check", dashboard_views.room_check, name="moderator-check"),
    path("moderator/rooms/<int:pk>/audit", dashboard_views.audit, name="moderator-audit"),
    path("moderator/rooms/<int:pk>/links", invite_link_views.links, name="moderator-links"),
    path("moderator/links/<int:pk>", invite_link_views.link, name="moderator-link"),
    path("moderator/links/<int:pk>/revoke", invite_link_views.revoke, name="moderator-link-revoke"),
    path(
        "moderator/links/<int:pk>/restore",
        invite_link_views.restore,
        name="moderator-link-restore",
    ),
    path(
        "moderator/links/<int:pk>/policy",
        invite_link_views.link_policy,
        name="moderator-link-policy",
    ),
    path("moderator/links/<int:pk>/qr.<str:kind>", invite_link_views.qr, name="moderator-link-qr"),
    path("moderator/links/<int:pk>/poster", invite_link_views.poster, name="moderator-link-poster"),
    path("moderator/requests/<int:pk>/approve", dashboard_views.approve, name="moderator-approve"),
    path("moderator/requests/<int:pk>/deny", dashboard_views.deny, name="moderator-deny"),
    path("moderator/requests/<int:pk>/ban", dashboard_views.ban, name="moderator-ban"),
    path("moderator/requests/<int:pk>/unban", dashboard_views.unban, name="moderator-unban"),
    path(
        "moderator/requests/<int:pk>/remove-from-call",
        dashboard_views.remove_from_call,
        name="moderator-remove-from-call",
    ),
    path("api/v1/schema", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/v1/rooms", api.RoomList.as_view(), name="api-rooms"),
    path(
        "api/v1/rooms/<int:pk>/join-requests",
        api.RoomJoinRequestList.as_view(),
        name="api-room-join-requests",
    ),
    path("api/v1/rooms/<int:pk>/approve-all", api.ApproveAll.as_view(), name="api-approve-all"),
    path("api/v1/rooms/<int:pk>/audit", api.Audit.as_view(), name="api-audit"),
    path(
        "api/v1/rooms/<int:pk>/invite-links", api.RoomInviteLinks.as_view(), name="api-invite-links"
    ),
    path(
        "api/v1/invite-links/<int:pk>/revoke",
        api.RevokeInviteLink.as_view(),
        name="api-invite-link-revoke",
    ),
    path("api/v1/invite-links/<int:pk>/qr", api.InviteLinkQr.as_view(), name="api-invite-link-qr"),
    path("api/v1/join-requests/<int:pk>/approve", api.Approve.as_view(), name="api-approve"),
    path("api/v1/join-requests/<int:pk>/deny", api.Deny.as_view(), name="api-deny"),
    path("api/v1/join-requests/<int:pk>/ban", api.Ban.as_view(), name="api-ban"),
    path(
        "api/v1/join-requests/<int:pk>/remove-from-call",
        api.RemoveFromCall.as_view(),
        name="api-remove-from-call",
    ),
    path("api/v1/rooms/<int:pk>/let-in", api.RoomGuestsLetIn.as_view(), name="api-let-in"),
    # Any other address under /api/ (an unknown path, an id that is not a number): JSON too.
    re_path(r"^api/", api_not_found),
    path("j/<str:token>", guest_views.join, name="join"),
    path("lobby/<uuid:public_id>", guest_views.lobby, name="lobby"),
    path("lobby/<uuid:public_id>/status", guest_views.lobby_status, name="lobby-status"),
    path("lobby/<uuid:public_id>/cancel", guest_views.lobby_cancel, name="lobby-cancel"),
    path("lobby/<uuid:public_id>/retry", guest_views.lobby_retry, name="lobby-retry"),
    path("lobby/<uuid:public_id>/ask-again", guest_views.lobby_ask_again, name="lobby-ask-again"),
    # The main homeserver's pushes (appservice API). Matrix ids may hold any character.
    path(
        "_matrix/app/v1/transactions/<str:txn_id>",
        appservice_views.transaction_push,
        name="appservice-transaction",
    ),
    path("_matrix/app/v1/users/<path:identifier>", appservice_views.query_not_ours),
    path("_matrix/app/v1/rooms/<path:identifier>", appservice_views.query_not_ours),
    path("_matrix/app/v1/ping", appservice_views.ping),
]

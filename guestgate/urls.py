from django.contrib import admin
from django.urls import path

from guestgate import views
from rooms import appservice_views, guest_views

urlpatterns = [
    path("", views.home, name="home"),
    path("admin/", admin.site.urls),
    path("j/<str:token>", guest_views.join, name="join"),
    path("lobby/<uuid:public_id>", guest_views.lobby, name="lobby"),
    path("lobby/<uuid:public_id>/status", guest_views.lobby_status, name="lobby-status"),
    path("lobby/<uuid:public_id>/cancel", guest_views.lobby_cancel, name="lobby-cancel"),
    path("lobby/<uuid:public_id>/retry", guest_views.lobby_retry, name="lobby-retry"),
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

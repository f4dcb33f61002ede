from django.contrib import admin
from django.urls import path

from guestgate import views
from rooms import appservice_views

urlpatterns = [
    path("", views.home, name="home"),
    path("admin/", admin.site.urls),
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

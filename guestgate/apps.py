from django.apps import AppConfig


class GuestGateConfig(AppConfig):
    name = "guestgate"
    verbose_name = "GuestGate"

    def ready(self) -> None:
        from guestgate import checks  # noqa: F401  (registers the system checks)

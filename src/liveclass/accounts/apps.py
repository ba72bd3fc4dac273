from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "liveclass.accounts"
    label = "accounts"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from liveclass.accounts import signals  # noqa: F401  (connects receivers)

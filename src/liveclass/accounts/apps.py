from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "liveclass.accounts"
    label = "accounts"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from liveclass.accounts import signals  # noqa: F401  (connects receivers)
        from liveclass.accounts.apple import use_apple_base_url
        from liveclass.config import web_config

        use_apple_base_url(web_config().APPLE_BASE_URL)

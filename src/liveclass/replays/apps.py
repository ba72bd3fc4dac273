from django.apps import AppConfig


class ReplaysConfig(AppConfig):
    name = "liveclass.replays"
    label = "replays"
    default_auto_field = "django.db.models.BigAutoField"

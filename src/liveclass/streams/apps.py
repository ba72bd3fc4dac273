from django.apps import AppConfig


class StreamsConfig(AppConfig):
    name = "liveclass.streams"
    label = "streams"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.db.models.signals import post_delete, post_save

        from liveclass.streams import selectors
        from liveclass.streams.models import LiveStreamSession

        # Any change to a stream row changes the schedule: drop the cached listing.
        post_save.connect(selectors.schedule_changed, sender=LiveStreamSession, weak=False)
        post_delete.connect(selectors.schedule_changed, sender=LiveStreamSession, weak=False)

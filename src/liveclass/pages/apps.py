from django.apps import AppConfig


class PagesConfig(AppConfig):
    name = "liveclass.pages"
    label = "pages"

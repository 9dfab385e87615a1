from django.apps import AppConfig


class KidneyProjectConfig(AppConfig):
    """Installed only to provide the runstack management command."""

    name = "kidneyproject"

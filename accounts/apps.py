from django.apps import AppConfig
from django.db.models.signals import post_migrate


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "Accounts and roles"

    def ready(self):
        from accounts.roles import sync_role_permissions

        post_migrate.connect(sync_role_permissions, dispatch_uid="sync_role_permissions")

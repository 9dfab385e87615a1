from django.core.management.base import BaseCommand

from accounts.roles import Role
from accounts.services import api_user_upsert


class Command(BaseCommand):
    help = "Create or update an API user in a role and print its token as the last line."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--role", required=True, choices=[str(role) for role in Role])
        parser.add_argument(
            "--organisation",
            help="Hospital or clinic (default: the user's current one, or "
            "KIDNEY_DEFAULT_ORGANISATION for a new user).",
        )

    def handle(self, *args, username, role, organisation, **options):
        user, token = api_user_upsert(username=username, role=Role(role), organisation=organisation)
        self.stderr.write(
            f"User {user.username!r} has the role {role} at {user.membership.organisation}. "
            "API token:"
        )
        self.stdout.write(token)

"""A user's own API tokens: list them, issue a fresh one (rotation), revoke one; and the
session check the review page uses to warn before automatic logoff."""

from django.conf import settings
from django.http import JsonResponse
from django.views.decorators.http import require_GET
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.response import Response

from accounts.models import ApiToken
from accounts.tokens import token_issue, token_revoke, token_status
from kidneyproject.api_requests import RequestBodySerializer


class ApiTokenSerializer(serializers.ModelSerializer):
    status = serializers.SerializerMethodField()

    class Meta:
        model = ApiToken
        fields = ["id", "name", "prefix", "created", "expires", "last_used", "revoked", "status"]
        read_only_fields = fields

    def get_status(self, token) -> str:
        return token_status(token)


class ApiTokenIssueSerializer(RequestBodySerializer):
    name = serializers.CharField(max_length=100, required=False, default="", allow_blank=True)


class IssuedApiTokenSerializer(ApiTokenSerializer):
    key = serializers.CharField(read_only=True, help_text="Shown this once; store it safely.")

    class Meta(ApiTokenSerializer.Meta):
        fields = [*ApiTokenSerializer.Meta.fields, "key"]
        read_only_fields = fields


class ApiTokenViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    """Your own API tokens. A token expires after KIDNEY_TOKEN_DAYS; issue a fresh one before
    then and revoke the old one (DELETE), or revoke one at once if it leaked. Revoked tokens
    are not listed."""

    serializer_class = ApiTokenSerializer

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return ApiToken.objects.none()
        return ApiToken.objects.filter(user=self.request.user, revoked__isnull=True)

    @extend_schema(request=ApiTokenIssueSerializer, responses={201: IssuedApiTokenSerializer})
    def create(self, request):
        """Issue a fresh token for yourself; its key is in this answer only."""
        body = ApiTokenIssueSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        token, key = token_issue(user=request.user, name=body.validated_data["name"])
        token.key = key
        return Response(IssuedApiTokenSerializer(token).data, status=status.HTTP_201_CREATED)

    def perform_destroy(self, instance):
        """Revoked: it answers 401 from now on and is gone from the API; its row stays, with
        when it was revoked."""
        token_revoke(instance)


class ExpiringTokenScheme(OpenApiAuthenticationExtension):
    target_class = "accounts.tokens.ExpiringTokenAuthentication"
    name = "tokenAuth"

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": "`Token <key>`: a key from create_api_user or POST /api/tokens/.",
        }


@require_GET
def session_status(request):
    """200 while the session lives (and, as any request, it restarts the idle time); 401 once
    it has ended."""
    if not request.user.is_authenticated:
        return JsonResponse({"detail": "Your session has ended; log in again."}, status=401)
    return JsonResponse({"idle_seconds": settings.SESSION_COOKIE_AGE})

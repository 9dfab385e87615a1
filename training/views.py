from django.conf import settings
from django.http import FileResponse
from django.shortcuts import render
from django.utils.safestring import mark_safe
from django.views.decorators.http import require_GET
from drf_spectacular.utils import extend_schema
from markdown_it import MarkdownIt
from rest_framework import status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from accounts.permissions import allow
from accounts.roles import Role
from training import services
from training.evaluation import PromotionRefused
from training.models import ModelVersion, PromotionLog
from training.serializers import (
    ModelVersionSerializer,
    PromotionLogSerializer,
    PromotionRequestSerializer,
)

ML_ENGINEERS = allow(read=(Role.ML_ENGINEER,), write=(Role.ML_ENGINEER,))


class ModelVersionViewSet(viewsets.ReadOnlyModelViewSet):
    """Model versions, newest first, with their threshold and metrics. ML engineers promote a
    version or roll the serving one back, through the promotion gate."""

    queryset = ModelVersion.objects.prefetch_related("evaluations__evaluation_set")
    serializer_class = ModelVersionSerializer
    permission_classes = [allow(read=tuple(Role))]
    conflicts = {
        "promote": "Refused: the gate rejected the version (the log says why; an override "
        "reason serves it anyway), or it serves already.",
        "rollback": "Refused: nothing served before, or the gate rejected the earlier version "
        "(an override reason puts it back anyway).",
    }

    @extend_schema(request=PromotionRequestSerializer, responses={200: PromotionLogSerializer})
    @action(detail=True, methods=["post"], permission_classes=[ML_ENGINEERS])
    def promote(self, request, pk=None):
        """Serve this version if it passes the promotion gate (against the serving version, on
        the original evaluation set and the newest recent block); with an override reason,
        serve it anyway. Either way the decision is logged."""
        return self._change_serving(request, services.model_version_promote)

    @extend_schema(request=PromotionRequestSerializer, responses={200: PromotionLogSerializer})
    @action(detail=True, methods=["post"], permission_classes=[ML_ENGINEERS])
    def rollback(self, request, pk=None):
        """Put back the version that served before this serving one, through the same gate;
        an override reason puts it back anyway. The decision is logged."""
        return self._change_serving(request, services.model_version_rollback)

    def _change_serving(self, request, change):
        body = PromotionRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            log = change(
                model_version=self.get_object(),
                actor=request.user,
                override_reason=body.validated_data["override_reason"],
            )
        except PromotionRefused as refusal:
            return Response({"detail": str(refusal)}, status=status.HTTP_409_CONFLICT)
        refused = log.decision not in PromotionLog.SERVING_DECISIONS
        return Response(
            PromotionLogSerializer(log).data,
            status=status.HTTP_409_CONFLICT if refused else status.HTTP_200_OK,
        )


@require_GET
def model_card(request):
    """The shipped model's card (docs/model-card.md): what it was trained on, how well it does
    on later studies, and what it must not be used for. Public, like the code. A browser gets
    it as a page; other clients (and `?format=md`) get the Markdown."""
    path = settings.BASE_DIR / "docs" / "model-card.md"
    wants_page = "text/html" in request.headers.get("Accept", "")
    if request.GET.get("format") == "md" or not wants_page:
        return FileResponse(path.open("rb"), content_type="text/markdown; charset=utf-8")
    # The card is ours, but raw HTML in it is still not passed through.
    renderer = MarkdownIt("commonmark", {"html": False}).enable("table")
    card = mark_safe(renderer.render(path.read_text(encoding="utf-8")))
    return render(request, "training/model_card.html", {"card": card})

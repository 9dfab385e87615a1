"""Training runs over the API, and model versions with their agreement with confirmed labels
(ML engineers start and retry runs)."""

from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from retraining.selectors import (
    label_training_parameters,
    model_version_agreement,
    model_version_recent_agreement,
)
from retraining.services import training_run_request, trigger_status
from training.models import PromotionLog, TrainingRun
from training.runs import TrainingRunActive, training_run_retry
from training.serializers import (
    PromotionLogSerializer,
    TrainingRunRequestSerializer,
    TrainingRunSerializer,
)
from training.views import ML_ENGINEERS, ModelVersionViewSet


class RefusedCandidateSerializer(serializers.Serializer):
    version = serializers.IntegerField()
    run = serializers.IntegerField()
    reasons = serializers.ListField(child=serializers.CharField())


class TriggerStatusSerializer(serializers.Serializer):
    ready = serializers.BooleanField(help_text="celery beat's next retrain check starts a run.")
    waiting_for = serializers.ListField(child=serializers.CharField())
    active_run = serializers.IntegerField(allow_null=True)
    new_labels = serializers.IntegerField(help_text="Confirmed since the last run.")
    new_labels_needed = serializers.IntegerField()
    refused_in_a_row = serializers.IntegerField()
    refused = RefusedCandidateSerializer(many=True)
    refusal_alert = serializers.CharField(allow_blank=True)


class TrainingRunViewSet(
    mixins.CreateModelMixin,
    mixins.RetrieveModelMixin,
    mixins.ListModelMixin,
    viewsets.GenericViewSet,
):
    """Training runs with status and progress. POST starts one on every confirmed label
    outside the frozen evaluation set; only one run is queued or running at a time."""

    queryset = TrainingRun.objects.select_related("model_version")
    serializer_class = TrainingRunSerializer
    permission_classes = [ML_ENGINEERS]
    conflicts = {
        "create": "Not started: a run is queued or running already (its id is in active_run), "
        "or the confirmed labels cannot fill a run yet (detail says what it waits for).",
        "retry": "Not started: a run is queued or running already (its id is in active_run), "
        "or the run did not fail.",
    }

    @extend_schema(request=TrainingRunRequestSerializer, responses={202: TrainingRunSerializer})
    def create(self, request, *args, **kwargs):
        overrides = TrainingRunRequestSerializer(data=request.data)
        overrides.is_valid(raise_exception=True)
        parameters = {**label_training_parameters(), **overrides.validated_data}
        return self._started(
            request,
            lambda: training_run_request(
                parameters=parameters, trigger=TrainingRun.Trigger.API, requested_by=request.user
            ),
        )

    @extend_schema(request=None, responses={202: TrainingRunSerializer})
    @action(detail=True, methods=["post"])
    def retry(self, request, pk=None):
        """Run a failed run again: a new run on its manifest and parameters."""
        failed = self.get_object()
        return self._started(
            request, lambda: training_run_retry(run=failed, requested_by=request.user)
        )

    @extend_schema(responses={200: TriggerStatusSerializer})
    @action(detail=False, methods=["get"])
    def trigger(self, request):
        """Whether the retrain check would start a run now, what it waits for if not, and the
        candidates the gate has kept out in a row (with why, once there are enough to alert)."""
        return Response(TriggerStatusSerializer(trigger_status()).data)

    def _started(self, request, start) -> Response:
        try:
            run = start()
        except TrainingRunActive as active:
            return Response(
                {"detail": str(active), "active_run": active.run.pk},
                status=status.HTTP_409_CONFLICT,
            )
        except ValueError as error:  # the labels or the run's state, not the request
            return Response({"detail": str(error)}, status=status.HTTP_409_CONFLICT)
        body = TrainingRunSerializer(run, context={"request": request}).data
        return Response(body, status=status.HTTP_202_ACCEPTED)


class ModelVersionWithAgreementViewSet(ModelVersionViewSet):
    """Model versions; the detail adds how the version agrees with confirmed labels: all of
    them, and the newest it predicted (`recent_agreement`: drift shows there first), and the
    promotion decisions about it, newest first (`decisions`)."""

    def retrieve(self, request, *args, **kwargs):
        response = super().retrieve(request, *args, **kwargs)
        model_version = self.get_object()
        response.data["agreement"] = model_version_agreement(model_version)
        response.data["recent_agreement"] = model_version_recent_agreement(model_version)
        decisions = PromotionLog.objects.filter(to_version=model_version).select_related(
            "from_version", "to_version", "actor"
        )
        response.data["decisions"] = PromotionLogSerializer(decisions[:20], many=True).data
        return response

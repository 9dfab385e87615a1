"""Training runs over the API: started on the confirmed labels (ML engineers only)."""

from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.response import Response

from scans.training_data import label_training_parameters, training_run_request
from training.models import TrainingRun
from training.serializers import TrainingRunRequestSerializer, TrainingRunSerializer
from training.services import TrainingRunActive
from training.views import ML_ENGINEERS


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

    @extend_schema(request=TrainingRunRequestSerializer, responses={202: TrainingRunSerializer})
    def create(self, request, *args, **kwargs):
        overrides = TrainingRunRequestSerializer(data=request.data)
        overrides.is_valid(raise_exception=True)
        parameters = {**label_training_parameters(), **overrides.validated_data}
        try:
            run = training_run_request(
                parameters=parameters, trigger=TrainingRun.Trigger.API, requested_by=request.user
            )
        except TrainingRunActive as active:
            return Response(
                {"detail": str(active), "active_run": active.run.pk},
                status=status.HTTP_409_CONFLICT,
            )
        except ValueError as error:
            return Response({"detail": str(error)}, status=status.HTTP_400_BAD_REQUEST)
        body = TrainingRunSerializer(run, context={"request": request}).data
        return Response(body, status=status.HTTP_202_ACCEPTED)

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.routers import DefaultRouter

from scans.training_views import TrainingRunViewSet
from scans.views import ScanViewSet
from training.views import ModelVersionViewSet

router = DefaultRouter()
router.register("scans", ScanViewSet, basename="scan")
router.register("models", ModelVersionViewSet, basename="modelversion")
router.register("training-runs", TrainingRunViewSet, basename="trainingrun")

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/", include(router.urls)),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
]

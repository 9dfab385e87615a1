"""The review page: Django templates and a little JavaScript over the REST API."""

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.shortcuts import redirect, render

from accounts.roles import Role, user_has_role
from training.selectors import serving_model_version


@login_required
def review_page(request):
    """Clinicians upload and watch; radiologists also work through the review queue."""
    if not user_has_role(request.user, Role.CLINICIAN, Role.RADIOLOGIST):
        if user_has_role(request.user, Role.ML_ENGINEER):
            return redirect("models")  # their landing page, where `/` sends everyone
        raise PermissionDenied("The review page is for clinicians and radiologists.")
    context = {
        "classes": settings.KIDNEY_CLASSES,
        "can_review": user_has_role(request.user, Role.RADIOLOGIST),
        "serving": serving_model_version(),
    }
    return render(request, "scans/review.html", context)

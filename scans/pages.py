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
    serving = serving_model_version()
    context = {
        "classes": settings.KIDNEY_CLASSES,
        "can_review": user_has_role(request.user, Role.RADIOLOGIST),
        "serving": serving,
        "judged": judged_on(serving),
    }
    return render(request, "scans/review.html", context)


# Where a version's quality was measured, best first: the frozen evaluation set, the held-out
# studies a shipped model was judged on.
JUDGING_SETS = (("evaluation", "the evaluation set"), ("held_out", "held-out later studies"))


def judged_on(serving) -> dict | None:
    for key, name in JUDGING_SETS:
        if serving is not None and serving.metrics.get(key):
            return {"name": name, "report": serving.metrics[key]}
    return None

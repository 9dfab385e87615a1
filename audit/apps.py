from django.apps import AppConfig
from django.core.signals import request_finished, request_started


class AuditConfig(AppConfig):
    name = "audit"
    verbose_name = "Access audit"

    def ready(self):
        from audit.services import forget_undelivered_reads, write_pending_reads

        request_started.connect(forget_undelivered_reads, dispatch_uid="audit_forget_undelivered")
        request_finished.connect(write_pending_reads, dispatch_uid="audit_write_pending_reads")

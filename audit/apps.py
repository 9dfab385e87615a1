from django.apps import AppConfig
from django.core.signals import request_finished


class AuditConfig(AppConfig):
    name = "audit"
    verbose_name = "Access audit"

    def ready(self):
        from audit.services import write_pending_reads

        request_finished.connect(write_pending_reads, dispatch_uid="audit_write_pending_reads")

"""The executor that lake.toml's ``[execution]`` names, for every job of the code location."""

import dagster as dg

from assets.lakehouse.config import ExecutionSection

DEFAULT_QUEUE = "dagster"  # dagster-celery's queue for steps without a queue tag; GPU steps go to "gpu"


def executor_for(section: ExecutionSection) -> dg.ExecutorDefinition | None:
    """None keeps Dagster's default executor."""
    if section.executor == "celery":
        from dagster_celery import celery_executor

        return celery_executor.configured({"broker": section.broker, "backend": section.backend},
                                          name="celery")
    if section.executor == "k8s":
        from dagster_k8s import k8s_job_executor

        return k8s_job_executor
    return None

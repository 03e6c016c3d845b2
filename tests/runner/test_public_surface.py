import src.runner


def test_exports_are_exactly_these() -> None:
    assert len(src.runner.__all__) == len(set(src.runner.__all__))  # order: ruff RUF022
    assert set(src.runner.__all__) == {
        "NO_RETRY", "ArgumentsInvalid", "Backoff", "Codec", "CronEntry", "CronEntryError", "CronState", "DeadJob",
        "DeadLetters", "EagerClient", "JobAborted", "JobFailure",
        "EnqueueOptions", "JobClient", "JobContext", "JobFailed", "JobHandle", "JobInfo", "JobNotFound", "JobSpec",
        "JobStatus", "JobTimeout", "JobsError", "PayloadError", "PayloadTooLarge", "Permanent", "RedisUnreachable",
        "ResultInvalid", "ResultNotReady", "Retry", "SettingsInvalid", "SignatureError", "UnknownJob", "cron",
        "cron_states", "job", "JobProcessDied", "JobProcessError", "SyncJobClient", "SyncJobHandle",
        "SyncWorkflowHandle", "RequeueRefused",
        "Chain", "Group", "Signature", "StepInfo", "WorkflowFailed", "WorkflowHandle", "WorkflowInfo", "chain",
        "chord", "group",
    }  # fmt: skip
    for name in src.runner.__all__:
        assert hasattr(src.runner, name)
